"""`lacy generate` end to end on stand-in checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.cli import build_parser, main
from tests.evaluation.openai_server import FakeOpenAIServer, completions_like_vllm


def test_generate_marks_partner_tokens(random_checkpoint, trained_checkpoint, capsys):
    # every step calls (budget 1.0): the trained partner writes the whole continuation
    assert main(["generate", "--model", str(random_checkpoint), "--partner", str(trained_checkpoint),
                 "--call-budget", "1.0", "--max-new-tokens", "4", "--no-color", "the cat"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("the cat[[ sat on the mat]]")
    assert "call rate 1.000 (4 calls in 4 steps)" in out and "4/4 tokens from the partner" in out


def test_generate_with_a_served_partner(random_checkpoint, foreign_partner, capsys):
    with FakeOpenAIServer(completions_like_vllm(foreign_partner)) as server:
        assert main(["generate", "--model", str(random_checkpoint), "--backend", "openai", "--base-url", server.base_url,
                     "--partner", "served-partner", "--call-budget", "1.0", "--max-new-tokens", "4", "--no-color",
                     "the cat"]) == 0
    assert "call rate 1.000 (4 calls in 4 steps)" in capsys.readouterr().out
    assert len(server.requests) == 4 and {r["body"]["model"] for r in server.requests} == {"served-partner"}
    assert all(r["body"]["prompt"].startswith("the cat") for r in server.requests)


def test_generate_no_call_needs_no_partner(trained_checkpoint, capsys):
    assert main(["generate", "--model", str(trained_checkpoint), "--no-call", "--max-new-tokens", "4",
                 "--json", "the cat"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == " sat on the mat" and record["calls"] == 0 and record["call_rate"] == 0.0


def test_generate_requires_a_partner_when_calling(trained_checkpoint):
    with pytest.raises(SystemExit, match="--partner"):
        main(["generate", "--model", str(trained_checkpoint), "the cat"])


def test_parser_lists_generate():
    assert "generate" in build_parser().format_help()


def test_generate_bad_checkpoint_is_one_line_naming_the_file(trained_checkpoint, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(trained_checkpoint, broken)
    (broken / "lacy.json").write_text('{"method": "lacy",')
    assert main(["generate", "--model", str(broken), "--no-call", "the cat"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"lacy generate: {broken / 'lacy.json'}: not valid JSON") and err.count("\n") == 1
    assert main(["generate", "--model", str(tmp_path / "nowhere"), "--no-call", "the cat"]) == 1
    assert capsys.readouterr().err.startswith(f"lacy generate: {tmp_path / 'nowhere' / 'config.json'}: missing")


def test_console_script_prints_no_traceback(tmp_path):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"txt": "no text field"}\n')
    done = subprocess.run([sys.executable, "-m", "evaluation.cli", "label", "--jsonl", str(docs)],
                          capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == f"lacy label: {docs}:line 1: missing 'text' field (fields: ['txt'])\n"
