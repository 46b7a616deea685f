"""Small synthetic datasets in the pipelines' schemas: a tiny SentencePiece model trained on
generated sentences, token shards with random classes, judge labels and reference losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.files import file_sha256, fingerprint, write_json
from pipelines.judge import JUDGE_SCHEMA
from pipelines.shards import MANIFEST, TOKEN_SCHEMA, list_array, shard_name, write_table
from pipelines.tokenizer import MODEL_FILE, Tokenizer, TokenizerConfig, train_tokenizer
from trainer.data import REF_LOSS_SCHEMA

NAMES = ["Ada Lovelace", "Alan Turing", "Marie Curie", "Niels Bohr", "Emmy Noether", "Carl Gauss", "Lise Meitner"]
CITIES = ["London", "Paris", "Berlin", "Vienna", "Warsaw", "Copenhagen", "Zurich"]
FIELDS = ["mathematics", "physics", "chemistry", "astronomy", "logic", "music"]


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[rng.integers(len(xs))]  # noqa: E731
    return [
        f"{pick(NAMES)} was born in {rng.integers(1700, 2000)} in {pick(CITIES)}. "
        f"They studied {pick(FIELDS)} at the University of {pick(CITIES)} and wrote {rng.integers(2, 90)} papers."
        for _ in range(n)
    ]


def write_dataset(out: Path, tokenizer_path: Path, docs: list[tuple[str, str, np.ndarray, np.ndarray]], shards: int = 2) -> dict:
    """Token shards + manifest + tokenizer copy, as pipelines.token_shards writes them."""
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(tokenizer_path)
    (out / MODEL_FILE).write_bytes(tok.path.read_bytes())
    entries = []
    for k in range(shards):
        part = docs[k::shards]
        table = pa.table(
            [pa.array([d[0] for d in part]), pa.array([d[1] for d in part]),
             list_array([d[2] for d in part], pa.int32()), list_array([d[3] for d in part], pa.int8())],
            schema=TOKEN_SCHEMA,
        )
        entries.append({"file": shard_name(k), "docs": len(part), "sha256": write_table(out / shard_name(k), table)})
    manifest = {
        "fingerprint": fingerprint([(d[0], d[2].tolist(), d[3].tolist()) for d in docs]),
        "tokenizer": {"file": MODEL_FILE, "sha256": file_sha256(tok.path), "vocab_size": tok.vocab_size,
                      "call_token_id": tok.call_id, "eos_id": tok.eos_id},
        "shards": entries,
        "docs": len(docs),
        "tokens": int(sum(len(d[2]) for d in docs)),
    }
    write_json(out / MANIFEST, manifest)
    return manifest


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
    return train_tokenizer(sentences(300), tmp_path_factory.mktemp("tokenizer"), TokenizerConfig(vocab_size=320))


def synthetic_docs(tokenizer_path: Path, n: int = 24, seed: int = 0, unlabeled: bool = False):
    tok = Tokenizer(tokenizer_path)
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        text = " ".join(sentences(int(rng.integers(1, 4)), seed=seed * 1000 + i))
        ids = tok.encode(text)
        cls = np.full(len(ids), -1, np.int8) if unlabeled else rng.choice(3, size=len(ids), p=[0.3, 0.3, 0.4]).astype(np.int8)
        docs.append((f"{'x' if unlabeled else 'd'}{seed}-{i:03d}", "validation" if i % 6 == 5 else "train", ids, cls))
    return docs


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
