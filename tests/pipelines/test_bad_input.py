"""Bad input that used to escape without naming its file and record (a truncated .jsonl.gz:
EOFError; a truncated Parquet file: "Parquet magic bytes not found"; a lone surrogate escape:
UnicodeEncodeError far from the file), each through a command line: exit status 1, one line on
stderr naming the file and the record, nothing written."""

import gzip
import json
import lzma

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.cli import main as lacy
from pipelines.files import RecordError, file_sha256, iter_jsonl, read_json_file, read_text
from pipelines.shards import MANIFEST, TOKEN_SCHEMA, ShardError, read_table
from trainer.__main__ import main as trainer
from trainer.toy_data import synthetic_docs, synthetic_tokenizer, write_dataset

DOCS = [{"text": f"The cat number {i} sat on the mat."} for i in range(3000)]


def one_error_line(capsys, prog: str) -> str:
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"{prog}: "), (out, err)
    return err


def truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def test_a_truncated_jsonl_gz_names_the_file_and_the_line_being_read(tmp_path, capsys):
    path = tmp_path / "docs.jsonl.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(d) + "\n" for d in DOCS).encode()))
    truncate(path)
    assert lacy(["label", "--jsonl", str(path)]) == 1
    err = one_error_line(capsys, "lacy label")
    assert err.startswith(f"lacy label: {path}:line ") and "truncated or corrupt compressed file" in err
    delivered = []
    with pytest.raises(RecordError, match=r":line (\d+): truncated") as caught:
        delivered.extend(lineno for lineno, _ in iter_jsonl(path))
    assert f":line {delivered[-1] + 1}: " in str(caught.value)  # the first line not read whole
    assert 0 < len(delivered) < len(DOCS)


def test_a_truncated_xz_file_read_whole_names_the_file(tmp_path):
    path = tmp_path / "docs.json.xz"
    path.write_bytes(lzma.compress(json.dumps({"examples": DOCS}).encode()))
    truncate(path)
    for read in (read_text, read_json_file):
        with pytest.raises(RecordError, match=rf"{path}: truncated or corrupt compressed file"):
            read(path)


def test_a_truncated_parquet_source_names_the_file_and_its_footer(tmp_path, capsys):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": [d["text"] for d in DOCS]}), path)
    truncate(path)
    assert lacy(["label", "--jsonl", str(path)]) == 1
    err = one_error_line(capsys, "lacy label")
    assert err.startswith(f"lacy label: {path}:footer: not a Parquet file, or a truncated one (Parquet magic bytes")


def test_a_corrupt_parquet_row_group_is_named(tmp_path, capsys):
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": [d["text"] for d in DOCS]}), path, row_group_size=1000, compression="none")
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(0)
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + 16] = b"\x55" * 16  # row group 1's first page header; the footer is whole
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match=rf"{path}:row group 1: corrupt"):
        read_table(path, pa.schema([("text", pa.string())]))
    assert lacy(["label", "--jsonl", str(path)]) == 1
    assert one_error_line(capsys, "lacy label").startswith(f"lacy label: {path}:row group 1: corrupt Parquet data")


def test_a_lone_surrogate_escape_names_the_file_line_and_field(tmp_path, capsys):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "The cat sat."}\n{"title": "ok \\ud83d\\ude00", "text": "bad \\ud800 here"}\n')
    assert lacy(["label", "--jsonl", str(path)]) == 1
    err = one_error_line(capsys, "lacy label")
    assert err == f'lacy label: {path}:line 2: ["text"] holds a lone surrogate escape \\ud800 (not a Unicode character)\n'


def test_a_lone_surrogate_in_a_json_file_names_the_string(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text('{"examples": [{"text": "fine \\\\ud800 (an escaped backslash)"}, {"\\udc00": 1}]}')
    with pytest.raises(RecordError, match=r'annotations\.json: the key \["examples"\]\[1\]\["\\udc00"\] holds a lone surrogate'):
        read_json_file(path)


@pytest.fixture
def token_shards(tmp_path):
    data = tmp_path / "token_shards"
    tokenizer = synthetic_tokenizer(tmp_path / "tokenizer")
    write_dataset(data, tokenizer, synthetic_docs(tokenizer, n=8))
    return data


def train(data, out) -> int:
    return trainer(["--preset", "smoke", "--method", "baseline", "--data", str(data), "--out", str(out), "--max-steps", "1"])


def test_a_truncated_token_shard_stops_the_trainer_naming_it(token_shards, tmp_path, capsys):
    """A dataset whose manifest was written over a truncated shard (the sha256 check passes):
    the trainer's shard reading names the shard and its footer, and writes no run directory."""
    shard = truncate(token_shards / "shard-0001.parquet")
    manifest = json.loads((token_shards / MANIFEST).read_text())
    manifest["shards"][1]["sha256"] = file_sha256(shard)
    (token_shards / MANIFEST).write_text(json.dumps(manifest))
    capsys.readouterr()
    assert train(token_shards, tmp_path / "run") == 1
    err = one_error_line(capsys, "python -m trainer")
    assert err.startswith(f"python -m trainer: {shard}:footer: not a Parquet file, or a truncated one")
    assert not (tmp_path / "run").exists() and not [p for p in (token_shards / "cache").iterdir() if not p.name.endswith(".lock")]
    with pytest.raises(ShardError, match=rf"{shard}:footer"):
        read_table(shard, TOKEN_SCHEMA)


def test_a_truncated_manifest_stops_the_trainer_naming_it(token_shards, tmp_path, capsys):
    truncate(token_shards / MANIFEST)
    capsys.readouterr()
    assert train(token_shards, tmp_path / "run") == 1
    err = one_error_line(capsys, "python -m trainer")
    assert err.startswith(f"python -m trainer: {token_shards / MANIFEST}:line ") and "not valid JSON" in err
    assert not (tmp_path / "run").exists()
