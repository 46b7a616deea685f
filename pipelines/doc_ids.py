"""Stable document ids and the split and shard a document goes to: functions of its id alone,
so every stage and machine agrees without a shared table."""

from __future__ import annotations

import hashlib


def doc_id_for(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _unit_hash(key: str) -> float:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(doc_id: str, validation_fraction: float = 0.1) -> str:
    return "validation" if _unit_hash("split:" + doc_id) < validation_fraction else "train"


def shard_of(doc_id: str, num_shards: int) -> int:
    return int(_unit_hash("shard:" + doc_id) * num_shards)
