"""Corpus readers, the deterministic split, and bad input: errors name the file and the
record, skips are counted."""

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import corpus
from pipelines.corpus import (
    CorpusConfig,
    CorpusError,
    build_corpus,
    read_corpus_shard,
    read_source,
    write_corpus,
)
from pipelines.doc_ids import doc_id_for, shard_of, split_of
from pipelines.files import RecordError, read_json, read_json_file

ENGLISH = "The river flows through the old town and it is known for the bridges that were built in the past."


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_embedded_dwiki_has_834_distinct_articles():
    table, report = build_corpus(CorpusConfig())
    assert table.num_rows == 834 and report.skip_counts() == {}
    assert len(set(table.column("doc_id").to_pylist())) == 834
    assert table.column("title")[0].as_py() == "Ralph Earl"
    validation = table.column("split").to_pylist().count("validation")
    assert 0.06 < validation / 834 < 0.14


def test_split_is_deterministic_and_about_ten_percent():
    ids = [doc_id_for(f"document {i}") for i in range(5000)]
    splits = [split_of(d) for d in ids]
    assert splits == [split_of(d) for d in ids]
    assert 0.09 < splits.count("validation") / 5000 < 0.11


def test_jsonl_parquet_and_directory_sources(tmp_path):
    jsonl(tmp_path / "a.jsonl", [{"text": ENGLISH, "title": "River"}, {"id": "x7", "text": ENGLISH + " More."}])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "Another " + ENGLISH}) + "\n")
    pq.write_table(pa.table({"text": ["Third " + ENGLISH], "doc_id": ["p1"]}), tmp_path / "c.parquet")
    table, report = build_corpus(CorpusConfig(sources=(str(tmp_path),)))
    assert table.num_rows == 4
    assert set(table.column("doc_id").to_pylist()) >= {"x7", "p1", doc_id_for(ENGLISH)}
    assert table.column("title").to_pylist()[0] == "River"


def test_byte_order_mark_is_read(tmp_path):
    """Windows tools often start UTF-8 JSONL and JSON with a byte-order mark."""
    line = json.dumps({"text": ENGLISH, "title": "River"}).encode()
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + line + b"\n" + line.replace(b"River", b"Lake") + b"\n")
    with gzip.open(tmp_path / "bom.jsonl.gz", "wb") as f:
        f.write(b"\xef\xbb\xbf" + json.dumps({"text": "Another " + ENGLISH}).encode() + b"\n")
    records = [r for path in ("bom.jsonl", "bom.jsonl.gz") for r in read_source(str(tmp_path / path))]
    assert [r.title for r in records] == ["River", "Lake", None]
    assert records[2].text.startswith("Another")
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps({"examples": [1]}).encode())
    assert read_json_file(tmp_path / "bom.json") == {"examples": [1]}


def test_invalid_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps({"text": ENGLISH}).encode() + b"\n" + b'{"text": "caf\xe9"}\n')
    with pytest.raises(RecordError, match=r"bad\.jsonl:line 2: invalid UTF-8"):
        list(read_source(str(path)))


def test_missing_text_field_names_file_and_line(tmp_path):
    path = jsonl(tmp_path / "docs.jsonl", [{"text": ENGLISH}, {"body": ENGLISH}])
    with pytest.raises(CorpusError, match=r"docs\.jsonl:line 2: missing 'text' field"):
        build_corpus(CorpusConfig(sources=(str(path),)))


def test_not_json_names_file_and_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(RecordError, match=r"docs\.jsonl:line 2: not valid JSON"):
        list(read_source(str(path)))


def test_empty_duplicate_and_non_english_are_counted_skips(tmp_path):
    path = jsonl(
        tmp_path / "docs.jsonl",
        [
            {"text": ENGLISH},
            {"text": "   \n "},
            {"text": ENGLISH},  # same text, same derived doc_id
            {"text": "Der Hund läuft schnell über die Straße und bellt laut, weil er großen Hunger hat."},
        ],
    )
    table, report = build_corpus(CorpusConfig(sources=(str(path),)))
    assert table.num_rows == 1
    assert report.skip_counts() == {"empty": 1, "duplicate": 1, "non_english": 1}
    assert [s["origin"] for s in report.skipped] == [f"{path}:line 2", f"{path}:line 3", f"{path}:line 4"]


def test_conflicting_doc_ids_are_an_error(tmp_path):
    path = jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": ENGLISH}, {"id": "a", "text": "Other " + ENGLISH}])
    with pytest.raises(CorpusError, match=r"docs\.jsonl:line 2: doc_id 'a' already used by .*line 1"):
        build_corpus(CorpusConfig(sources=(str(path),)))


def test_unknown_source_and_empty_corpus(tmp_path):
    with pytest.raises(CorpusError, match="no such file"):
        list(read_source(str(tmp_path / "missing.jsonl")))
    path = jsonl(tmp_path / "docs.jsonl", [{"text": " "}])
    with pytest.raises(CorpusError, match="no usable documents"):
        build_corpus(CorpusConfig(sources=(str(path),)))


def test_hugging_face_source_from_a_local_directory(tmp_path):
    data = tmp_path / "hf_dataset"
    data.mkdir()
    jsonl(data / "train.jsonl", [{"text": ENGLISH, "title": "River"}])
    records = list(read_source(f"hf:{data}"))
    assert [r.title for r in records] == ["River"] and records[0].origin.startswith(f"hf:{data}")


def test_corpus_shards_and_manifest(tmp_path):
    manifest = write_corpus(CorpusConfig(), tmp_path, 3)
    assert sum(s["docs"] for s in manifest["shards"]) == 834
    assert read_json(tmp_path / "manifest.json")["fingerprint"] == manifest["fingerprint"]
    again = write_corpus(CorpusConfig(), tmp_path, 3)
    assert again["fingerprint"] == manifest["fingerprint"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # the spill files are gone


def test_streamed_shards_equal_the_in_memory_corpus(tmp_path, monkeypatch):
    """Spilled in many small row groups, the shards hold the in-memory corpus' rows in its
    order, deduplicated shard by shard; skipped.jsonl has every skip."""
    monkeypatch.setattr(corpus, "SPILL_BYTES", 2000)  # a spill every few documents
    rows = [{"text": f"{ENGLISH} Number {i}."} for i in range(40)]
    rows[7] = {"text": " "}
    rows[30] = rows[12]
    rows[35] = {"id": "t", "text": ENGLISH}
    rows[38] = {"id": "t", "text": ENGLISH}
    path = jsonl(tmp_path / "docs.jsonl", rows)
    config = CorpusConfig(sources=(str(path),))
    manifest = write_corpus(config, tmp_path / "corpus", 3)
    table, report = build_corpus(config)
    shards = [read_corpus_shard(tmp_path / "corpus", k) for k in range(3)]
    ids = table.column("doc_id").to_pylist()
    for k, shard in enumerate(shards):
        assert shard.to_pylist() == [r for r in table.to_pylist() if shard_of(r["doc_id"], 3) == k]
    assert sum(s.num_rows for s in shards) == len(ids) == manifest["documents"] == 37
    assert manifest["skipped"] == report.skip_counts() == {"empty": 1, "duplicate": 2}
    skipped = [json.loads(line)["origin"] for line in (tmp_path / "corpus" / "skipped.jsonl").read_text().splitlines()]
    assert sorted(skipped) == sorted(s["origin"] for s in report.skipped)


def test_conflicting_doc_ids_are_an_error_when_streamed(tmp_path):
    path = jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": ENGLISH}, {"id": "a", "text": "Other " + ENGLISH}])
    with pytest.raises(CorpusError, match=r"docs\.jsonl:line 2: doc_id 'a' already used by .*line 1"):
        write_corpus(CorpusConfig(sources=(str(path),)), tmp_path / "corpus", 2)
    assert not (tmp_path / "corpus" / "manifest.json").exists()
