"""Small synthetic token datasets in the pipelines' schemas, for tests and benchmarks: a
tiny SentencePiece model's ids of generated biography sentences, with random classes, and
label directories (judge labels, reference losses) mirroring their shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.classes import UNLABELED
from pipelines.files import file_sha256, fingerprint, read_json, write_json
from pipelines.shards import JUDGE_SCHEMA, MANIFEST, TOKEN_SCHEMA, list_array, shard_name, write_table
from pipelines.tokenizer import MODEL_FILE, Tokenizer, TokenizerConfig, train_tokenizer
from trainer.data import REF_LOSS_SCHEMA

SPLITS = ("train", "validation")

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
        entries.append({"file": shard_name(k), "docs": len(part), "tokens_per_split": _tokens_per_split(part),
                        "sha256": write_table(out / shard_name(k), table)})
    manifest = {
        "fingerprint": fingerprint([e["sha256"] for e in entries]),  # the shards' bytes follow from their contents
        "tokenizer": {"file": MODEL_FILE, "sha256": file_sha256(tok.path), "vocab_size": tok.vocab_size,
                      "call_token_id": tok.call_id, "eos_id": tok.eos_id},
        "shards": entries,
        "docs": len(docs),
        "tokens": int(sum(len(d[2]) for d in docs)),
        "tokens_per_split": _tokens_per_split(docs),
    }
    write_json(out / MANIFEST, manifest)
    return manifest


def _tokens_per_split(docs: list[tuple[str, str, np.ndarray, np.ndarray]]) -> dict[str, int]:
    return {s: int(sum(len(d[2]) for d in docs if d[1] == s)) for s in SPLITS}


def write_labels(out: Path, dataset: Path, column: str, values: dict[str, np.ndarray | None],
                 token_shards_fingerprint: str | None = None) -> dict:
    """A label directory mirroring `dataset`'s shards: judge labels (`column` judge_call) or
    reference losses (ref_loss); a document whose value is None gets a null row."""
    out.mkdir(parents=True, exist_ok=True)
    data = read_json(dataset / MANIFEST)
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


def synthetic_tokenizer(out_dir: Path) -> Path:
    """A 320-piece SentencePiece model (+ <CALL>) trained on generated sentences."""
    return train_tokenizer(sentences(300), out_dir, TokenizerConfig(vocab_size=320))


def synthetic_docs(tokenizer_path: Path, n: int = 24, seed: int = 0, unlabeled: bool = False) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(doc_id, split, input_ids, token_class) of `n` documents of 1-3 sentences; every 6th is
    a validation document; classes random (40% facts), or UNLABELED."""
    tok = Tokenizer(tokenizer_path)
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        text = " ".join(sentences(int(rng.integers(1, 4)), seed=seed * 1000 + i))
        ids = tok.encode(text)
        cls = np.full(len(ids), UNLABELED, np.int8) if unlabeled else rng.choice(3, size=len(ids), p=[0.3, 0.3, 0.4]).astype(np.int8)
        docs.append((f"{'x' if unlabeled else 'd'}{seed}-{i:03d}", "validation" if i % 6 == 5 else "train", ids, cls))
    return docs
