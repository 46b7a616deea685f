"""Small synthetic datasets in the pipelines' schemas (`trainer.synthetic`): a tiny
SentencePiece model trained on generated sentences, token shards with random classes, judge
labels and reference losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.files import fingerprint, write_json
from pipelines.shards import JUDGE_SCHEMA, MANIFEST, list_array, write_table
from trainer.data import REF_LOSS_SCHEMA
from trainer.synthetic import synthetic_docs, synthetic_tokenizer, write_dataset


def write_labels(out: Path, dataset: Path, column: str, values: dict[str, np.ndarray | None],
                 token_shards_fingerprint: str | None = None) -> dict:
    """A label directory mirroring `dataset`'s shards (judge labels or reference losses)."""
    out.mkdir(parents=True, exist_ok=True)
    data = json.loads((dataset / MANIFEST).read_text())
    schema, value_type = (JUDGE_SCHEMA, pa.int8()) if column == "judge_call" else (REF_LOSS_SCHEMA, pa.float32())
    entries = []
    for entry in data["shards"]:
        ids = pq.read_table(dataset / entry["file"], columns=["doc_id"]).column("doc_id").to_pylist()
        rows = [values[d] for d in ids]
        col = list_array([r if r is not None else np.zeros(0) for r in rows], value_type)
        col = pa.ListArray.from_arrays(col.offsets, col.values, mask=pa.array([r is None for r in rows]))
        entries.append({"file": entry["file"], "sha256": write_table(out / entry["file"], pa.table([pa.array(ids), col], schema=schema))})
    manifest = {"fingerprint": fingerprint(column, data["fingerprint"]),
                "token_shards_fingerprint": token_shards_fingerprint or data["fingerprint"], "shards": entries}
    write_json(out / MANIFEST, manifest)
    return manifest


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    return synthetic_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, tokenizer_path) -> Path:
    out = tmp_path_factory.mktemp("token_shards")
    write_dataset(out, tokenizer_path, synthetic_docs(tokenizer_path))
    return out


@pytest.fixture(scope="session")
def judge_dir(tmp_path_factory, dataset, tokenizer_path) -> Path:
    rng = np.random.default_rng(1)
    values = {d[0]: (rng.random(len(d[2])) < 0.15).astype(np.int8) for d in synthetic_docs(tokenizer_path)}
    out = tmp_path_factory.mktemp("judge")
    write_labels(out, dataset, "judge_call", values)
    return out


@pytest.fixture(scope="session")
def ref_dir(tmp_path_factory, dataset, tokenizer_path) -> Path:
    rng = np.random.default_rng(2)
    values = {d[0]: (rng.random(len(d[2])) * 6).astype(np.float32) if d[1] == "train" else None
              for d in synthetic_docs(tokenizer_path)}
    out = tmp_path_factory.mktemp("ref_losses")
    write_labels(out, dataset, "ref_loss", values)
    return out


@pytest.fixture(scope="session")
def unlabeled_dataset(tmp_path_factory, tokenizer_path) -> Path:
    out = tmp_path_factory.mktemp("unlabeled")
    write_dataset(out, tokenizer_path, synthetic_docs(tokenizer_path, n=8, seed=7, unlabeled=True), shards=1)
    return out
