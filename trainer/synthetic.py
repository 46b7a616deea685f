"""Small synthetic token datasets in the pipelines' schemas, for tests and benchmarks: a
tiny SentencePiece model's ids of generated biography sentences, with random classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.classes import UNLABELED
from pipelines.files import file_sha256, fingerprint, write_json
from pipelines.shards import MANIFEST, TOKEN_SCHEMA, list_array, shard_name, write_table
from pipelines.tokenizer import MODEL_FILE, Tokenizer, TokenizerConfig, train_tokenizer

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
