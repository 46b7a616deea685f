"""`lacy label` runs the same labeler and alignment as the assets."""

import json

from pipelines.cli import main


def test_label_text_prints_one_json_object_per_word(capsys):
    assert main(["label", "Marie Curie discovered radium in 1898."]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["Marie", "Curie", "discovered", "radium", "in", "1898", "."]
    assert rows[0] == {"text": "Marie", "start": 0, "end": 5, "label": "fact", "rule": "person_component_first"}
    assert rows[-2]["label"] == "fact" and rows[4]["label"] == "grammatical"


def test_label_tokens_and_stats_on_jsonl(capsys, tmp_path, tokenizer):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "Napoleon was born on August 15, 1769."}) + "\n" + json.dumps({"text": "The cat sat."}) + "\n")
    assert main(["label", "--jsonl", str(docs), "--tokens", str(tokenizer.path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["doc"] for r in rows} == {0, 1}
    digits = [r for r in rows if r["piece"] in "0123456789"]
    assert [r["piece"] for r in digits] == ["1", "5", "1", "7", "6", "9"] and all(r["label"] == "fact" for r in digits)
    assert main(["label", "--jsonl", str(docs), "--tokens", str(tokenizer.path), "--stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 2 and stats["words"] == 13
    assert abs(sum(stats["word_fractions"].values()) - 1) < 1e-3 and abs(sum(stats["token_fractions"].values()) - 1) < 1e-3


def test_label_needs_text_or_jsonl(capsys):
    assert main(["label"]) == 2
    assert "give a text or --jsonl" in capsys.readouterr().err


def test_label_bad_jsonl_is_one_line_naming_file_and_line(capsys, tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "The cat sat."}) + '\n{"text": "unfinished\n')
    assert main(["label", "--jsonl", str(docs)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lacy label: {docs}:line 2: not valid JSON") and err.count("\n") == 1


def test_label_missing_tokenizer_is_one_line(capsys, tmp_path):
    assert main(["label", "--tokens", str(tmp_path / "nowhere"), "The cat sat."]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lacy label: {tmp_path / 'nowhere'}: no tokenizer") and err.count("\n") == 1
