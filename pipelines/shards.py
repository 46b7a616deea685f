"""Parquet shards: word labels, token shards and their manifest. Writers rename into
place when complete; readers check lengths and fingerprints and name the file."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.files import atomic_path, file_sha256, one_line, read_json

MANIFEST = "manifest.json"
WORD_LABEL_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("word_start", pa.list_(pa.int32())),
        ("word_end", pa.list_(pa.int32())),
        ("word_class", pa.list_(pa.int8())),
        ("word_rule", pa.list_(pa.int8())),
    ]
)
TOKEN_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("split", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("token_class", pa.list_(pa.int8())),
    ]
)
JUDGE_SCHEMA = pa.schema([("doc_id", pa.string()), ("judge_call", pa.list_(pa.int8()))])  # lmlm_judge_labels


class ShardError(ValueError):
    """A shard that does not match its schema, its manifest or its sibling shards."""


def shard_name(shard: int, suffix: str = ".parquet") -> str:
    return f"shard-{shard:04d}{suffix}"


def list_array(arrays: Sequence[np.ndarray], value_type: pa.DataType) -> pa.ListArray:
    """One Arrow list column from per-document numpy arrays, without a Python loop per value."""
    lengths = np.fromiter((len(a) for a in arrays), dtype=np.int64, count=len(arrays))
    offsets = np.zeros(len(arrays) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    values = np.concatenate(arrays) if len(arrays) else np.zeros(0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values.astype(value_type.to_pandas_dtype(), copy=False)))


PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, use_dictionary=["doc_id", "split"], write_statistics=False)


@contextmanager
def table_writer(path: str | Path, schema: pa.Schema, metadata: dict | None = None) -> Iterator[pq.ParquetWriter]:
    """A Parquet file written one row group per `write_table` call (a stage streams its
    output through it) and renamed into place only when the block completes."""
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), b"lacy": json.dumps(metadata, sort_keys=True).encode()})
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as writer:
        yield writer


def write_table(path: str | Path, table: pa.Table, metadata: dict | None = None) -> str:
    """Write a Parquet file atomically in one row group; returns its sha256. The output
    depends only on the table and metadata, so a rerun on the same inputs writes the same bytes."""
    with table_writer(path, table.schema, metadata) as writer:
        writer.write_table(table)
    return file_sha256(path)


PARQUET_ERRORS = (pa.ArrowException, OSError)  # what pyarrow raises on a file that is not (whole) Parquet


def parquet_file(path: str | Path) -> pq.ParquetFile:
    """`path` opened as Parquet (footer and schema read). A file that is not Parquet, or lost
    its footer (truncated), fails naming it: "Parquet magic bytes not found" names neither."""
    try:
        return pq.ParquetFile(path)
    except PARQUET_ERRORS as e:
        raise ShardError(f"{path}:footer: not a Parquet file, or a truncated one ({one_line(e)})") from e


def read_table(path: str | Path, schema: pa.Schema, columns: list[str] | None = None) -> pa.Table:
    """The Parquet file at `path` with its `columns` checked against `schema`; a truncated
    or corrupt file fails naming it and the footer or the row group that cannot be read."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing shard (materialize the asset that writes it)")
    with parquet_file(path) as file:
        try:
            table = file.read(columns=columns)
        except PARQUET_ERRORS as e:
            raise ShardError(f"{path}:{_unreadable_part(file, columns)}: corrupt ({one_line(e)})") from e
    expected = schema if columns is None else pa.schema([schema.field(c) for c in columns])
    for field in expected:
        if field.name not in table.column_names:
            raise ShardError(f"{path}: missing column {field.name!r}")
        if not table.schema.field(field.name).type.equals(field.type):
            raise ShardError(f"{path}: column {field.name!r} is {table.schema.field(field.name).type}, expected {field.type}")
    return table


def _unreadable_part(file: pq.ParquetFile, columns: list[str] | None) -> str:
    """The first row group of `file` that cannot be read ("row groups" if each can on its own)."""
    for k in range(file.num_row_groups):
        try:
            file.read_row_group(k, columns=columns)
        except PARQUET_ERRORS:
            return f"row group {k}"
    return "row groups"


def file_metadata(path: str | Path) -> dict:
    with parquet_file(path) as file:
        meta = file.schema_arrow.metadata or {}
    return json.loads(meta.get(b"lacy", b"{}"))


def check_equal_lengths(path: str | Path, table: pa.Table, columns: Sequence[str]) -> None:
    """Every row's lists in `columns` have the same length (OLMo-core's ids/labels check)."""
    lengths = [pc.list_value_length(table.column(c)).to_numpy(zero_copy_only=False) for c in columns]
    for name, other in zip(columns[1:], lengths[1:]):
        bad = np.flatnonzero(other != lengths[0])
        if len(bad):
            row = int(bad[0])
            doc = table.column("doc_id")[row].as_py()
            raise ShardError(
                f"{path}: row {row} (doc_id {doc}): {columns[0]} has {lengths[0][row]} entries, {name} has {other[row]}"
            )


def read_manifest(directory: str | Path) -> dict:
    """Read `<dir>/manifest.json` and check that every shard it lists is there, whole."""
    directory = Path(directory)
    manifest = read_json(directory / MANIFEST)
    for entry in manifest["shards"]:
        path = directory / entry["file"]
        if not path.exists():
            raise ShardError(f"{path}: listed in {directory / MANIFEST} but missing")
        if file_sha256(path) != entry["sha256"]:
            raise ShardError(f"{path}: contents differ from {directory / MANIFEST} (sha256 mismatch); rematerialize")
    return manifest
