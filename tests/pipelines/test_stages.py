"""The data stages end to end on a few real dwiki articles: shards line up, reruns are
byte-identical, and a crash leaves nothing that looks complete."""

import json
import lzma
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import shards as shards_module
from pipelines.corpus import LMLM_FILES, CorpusConfig, build_corpus, write_corpus
from pipelines.facts import LabelerConfig
from pipelines.files import file_sha256, read_json
from pipelines.judge import build_judge_labels
from pipelines.shards import ShardError, check_equal_lengths, read_manifest, shard_name
from pipelines.token_shards import LENGTH_BUCKETS, build_token_shards, length_bucket, tokenize_shards, verify_shard, write_manifest
from pipelines.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from pipelines.word_labels import label_shard, label_shards

N_DOCS, N_SHARDS = 12, 2


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """The first 12 Llama-annotated dwiki articles as a JSONL corpus + annotation file."""
    root = tmp_path_factory.mktemp("stages")
    examples = json.load(lzma.open(LMLM_FILES[0], "rt"))["examples"][:N_DOCS]
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": e["text"]}) + "\n" for e in examples))
    (root / "annotations.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    return root


def run_stages(root, out, labeler):
    config = CorpusConfig(sources=(str(root / "docs.jsonl"),))
    write_corpus(config, out / "corpus", N_SHARDS)
    train_tokenizer(build_corpus(config)[0].column("text").to_pylist(), out / "tokenizer", TokenizerConfig(vocab_size=600))
    for k in range(N_SHARDS):
        label_shard(out / "corpus", k, out / "labels", labeler, log=lambda _m: None)
    tokens = build_token_shards(out / "corpus", out / "labels", out / "tokenizer" / "tokenizer.model", out / "tokens", log=lambda _m: None)
    judge = build_judge_labels(out / "corpus", out / "tokens", out / "judge", str(root / "annotations.jsonl"), log=lambda _m: None)
    return tokens, judge


@pytest.fixture(scope="module")
def built(small_corpus, labeler, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, *run_stages(small_corpus, out, labeler)


def test_token_shards_line_up_with_labels_and_text(built):
    out, manifest, _ = built
    assert manifest["docs"] == N_DOCS and manifest["tokens"] > 1000
    assert 0.2 < manifest["fact_fraction"] < 0.5
    tok = Tokenizer(out / "tokens")  # the dataset carries its tokenizer
    for k in range(N_SHARDS):
        result = verify_shard(out / "tokens" / shard_name(k), tok, out / "corpus", k)
        assert result["docs_not_round_tripping"] == 0
    read_manifest(out / "tokens")  # every listed shard present with its sha256


def test_shard_by_shard_token_shards_give_the_same_manifest_once_every_shard_is_current(built, tmp_path):
    """token_shards partition runs: no manifest while a shard is missing or was made from other
    inputs (here: another tokenizer); the last current shard completes the same manifest."""
    out, manifest, _ = built
    inputs = (out / "corpus", out / "labels", out / "tokenizer" / "tokenizer.model")
    tokenize_shards(*inputs, tmp_path, [1], log=lambda _m: None)
    assert write_manifest(*inputs, tmp_path) == [0] and not (tmp_path / "manifest.json").exists()
    tokenize_shards(*inputs, tmp_path, [0], log=lambda _m: None)
    assert write_manifest(*inputs, tmp_path) == manifest
    texts = [t for k in range(N_SHARDS) for t in pq.read_table(out / "corpus" / shard_name(k)).column("text").to_pylist()]
    other = train_tokenizer(texts, tmp_path / "other", TokenizerConfig(vocab_size=550))
    assert write_manifest(inputs[0], inputs[1], other, tmp_path) == [0, 1]


def test_judge_labels_are_aligned_and_reported(built):
    out, _, judge = built
    assert judge["annotated_docs"] == N_DOCS and judge["lookups"] > 50
    assert judge["placed"] + judge["unplaced"] == judge["lookups"]
    assert 0.05 < judge["judge_call_fraction"] < 0.3
    agreement = judge["agreement_with_spacy_facts"]
    assert 0.5 < agreement["judge_calls_that_are_facts"] <= 1.0
    for k in range(N_SHARDS):
        ids = pq.read_table(out / "tokens" / shard_name(k)).column("input_ids")
        calls = pq.read_table(out / "judge" / shard_name(k)).column("judge_call")
        assert [len(a) for a in ids.to_pylist()] == [len(c) for c in calls.to_pylist()]


def test_rerun_is_byte_identical(built, small_corpus, labeler, tmp_path):
    out, manifest, judge = built
    manifest2, judge2 = run_stages(small_corpus, tmp_path, labeler)
    assert manifest2["fingerprint"] == manifest["fingerprint"] and judge2["fingerprint"] == judge["fingerprint"]
    for folder in ("corpus", "labels", "tokens", "judge"):
        for k in range(N_SHARDS):
            assert file_sha256(out / folder / shard_name(k)) == file_sha256(tmp_path / folder / shard_name(k)), folder
    for folder in ("corpus", "tokens", "judge"):  # manifests hold no timings
        assert file_sha256(out / folder / "manifest.json") == file_sha256(tmp_path / folder / "manifest.json"), folder


def test_fact_fraction_by_document_length(built):
    out, manifest, _ = built
    by_length = manifest["fact_fraction_by_length"]
    assert sum(b["docs"] for b in by_length.values()) == N_DOCS
    assert sum(b["tokens"] for b in by_length.values()) == manifest["tokens"]
    facts = sum(b["fact_fraction"] * b["tokens"] for b in by_length.values())
    assert facts == pytest.approx(manifest["classes"]["fact"])
    # recount one bucket from the shards themselves
    rows = [r for k in range(N_SHARDS) for r in pq.read_table(out / "tokens" / shard_name(k)).column("token_class").to_pylist()]
    bucket = next(iter(by_length))
    chosen = [r for r in rows if length_bucket(len(r)) == bucket]
    assert by_length[bucket]["docs"] == len(chosen)
    assert by_length[bucket]["fact_fraction"] == pytest.approx(sum(c == 2 for r in chosen for c in r) / sum(map(len, chosen)))


def test_length_buckets():
    assert [length_bucket(n) for n in (0, 149, 150, 399, 400, 799, 800, 5000)] == [
        "<150", "<150", "150-399", "150-399", "400-799", "400-799", ">=800", ">=800"]
    assert LENGTH_BUCKETS == ["<150", "150-399", "400-799", ">=800"]


def test_parallel_workers_write_the_same_labels(built, tmp_path):
    out, *_ = built
    label_shards(out / "corpus", list(range(N_SHARDS)), tmp_path, LabelerConfig(), workers=2, log=lambda _m: None)
    for k in range(N_SHARDS):
        assert file_sha256(tmp_path / shard_name(k)) == file_sha256(out / "labels" / shard_name(k))


def test_a_crash_mid_write_leaves_no_complete_looking_file(built, labeler, tmp_path, monkeypatch):
    out, *_ = built

    def crash(writer, table, *args, **kwargs):  # the file is open, its header written
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(shards_module.pq.ParquetWriter, "write_table", crash)
    with pytest.raises(KeyboardInterrupt):
        label_shard(out / "corpus", 0, tmp_path, labeler, log=lambda _m: None)
    assert list(tmp_path.iterdir()) == []


def test_mismatched_lengths_name_file_and_document(built, tmp_path):
    out, *_ = built
    table = pq.read_table(out / "tokens" / shard_name(0))
    rows = table.to_pylist()
    rows[1]["token_class"] = rows[1]["token_class"][:-1]
    broken = pa.Table.from_pylist(rows, schema=table.schema)
    with pytest.raises(ShardError, match=rf"row 1 \(doc_id {rows[1]['doc_id']}\): input_ids has \d+ entries, token_class has"):
        check_equal_lengths(tmp_path / "x.parquet", broken, ["input_ids", "token_class"])


def test_tampered_shard_is_detected(built, tmp_path):
    out, *_ = built
    shutil.copytree(out / "tokens", tmp_path / "tokens")
    (tmp_path / "tokens" / shard_name(1)).write_bytes(b"garbage")
    with pytest.raises(ShardError, match="sha256 mismatch"):
        read_manifest(tmp_path / "tokens")
    assert read_json(out / "tokens" / "manifest.json")["shards"][1]["file"] == shard_name(1)
