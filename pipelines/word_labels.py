"""The `spacy_word_labels` stage: label every word of a corpus shard with the A.2.1
rules and write `shard-XXXX.parquet` (doc_id, word spans, class, rule)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines import align, facts
from pipelines.classes import CLASS_NAMES
from pipelines.corpus import read_corpus_shard
from pipelines.facts import RULES, FactLabeler, LabelerConfig, WordLabels
from pipelines.files import clean_stale_tmp, code_fingerprint, fingerprint, read_json
from pipelines.shards import MANIFEST, WORD_LABEL_SCHEMA, list_array, shard_name, write_table

Log = Callable[[str], None]


def labeler_fingerprint(corpus_manifest: dict, shard: int, config: LabelerConfig, nlp_meta: dict) -> str:
    return fingerprint(
        corpus_manifest["shards"][shard]["sha256"],
        asdict(config),
        {k: nlp_meta.get(k) for k in ("name", "version", "spacy_version")},
        code_fingerprint(facts, align),
    )


def label_shard(corpus_dir: str | Path, shard: int, out_dir: str | Path, labeler: FactLabeler, log: Log = print) -> dict:
    """Label one corpus shard; returns its statistics (also stored in the file)."""
    t0 = time.perf_counter()
    corpus_manifest = read_json(Path(corpus_dir) / MANIFEST)
    table = read_corpus_shard(corpus_dir, shard, ["doc_id", "text"])
    texts = table.column("text").to_pylist()
    labels: list[WordLabels] = []
    every = max(1, len(texts) // 10)
    for i, words in enumerate(labeler.label_texts(texts), start=1):
        labels.append(words)
        if i % every == 0 or i == len(texts):
            log(f"shard {shard}: labelled {i}/{len(texts)} documents")
    stats = shard_stats(shard, labels, sum(map(len, texts)))
    stats["fingerprint"] = labeler_fingerprint(corpus_manifest, shard, labeler.config, labeler.nlp.meta)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    out = pa.table(
        [
            table.column("doc_id"),
            list_array([w.start for w in labels], pa.int32()),
            list_array([w.end for w in labels], pa.int32()),
            list_array([w.cls for w in labels], pa.int8()),
            list_array([w.rule for w in labels], pa.int8()),
        ],
        schema=WORD_LABEL_SCHEMA,
    )
    deterministic = {k: v for k, v in stats.items() if k != "seconds"}
    stats["sha256"] = write_table(Path(out_dir) / shard_name(shard), out, {**deterministic, "rules": RULES})
    return stats


def shard_stats(shard: int, labels: Sequence[WordLabels], characters: int) -> dict:
    cls = np.concatenate([w.cls for w in labels]) if labels else np.zeros(0, np.int8)
    rule = np.concatenate([w.rule for w in labels]) if labels else np.zeros(0, np.int8)
    return {
        "shard": shard,
        "docs": len(labels),
        "characters": characters,
        "words": int(len(cls)),
        "classes": {name: int((cls == c).sum()) for c, name in enumerate(CLASS_NAMES)},
        "rules": {name: int((rule == r).sum()) for r, name in enumerate(RULES)},
    }


_WORKER: FactLabeler | None = None


def _init_worker(config: LabelerConfig) -> None:
    global _WORKER
    _WORKER = FactLabeler(config)


def _label_in_worker(corpus_dir: str, shard: int, out_dir: str) -> dict:
    assert _WORKER is not None
    return label_shard(corpus_dir, shard, out_dir, _WORKER, log=lambda _msg: None)


def label_shards(
    corpus_dir: str | Path,
    shards: Sequence[int],
    out_dir: str | Path,
    config: LabelerConfig = LabelerConfig(),
    workers: int = 1,
    log: Log = print,
) -> list[dict]:
    """Label several shards, in `workers` processes that each load spaCy once."""
    clean_stale_tmp(out_dir, [shard_name(s) for s in shards])
    if workers <= 1 or len(shards) <= 1:
        labeler = FactLabeler(config)
        return [label_shard(corpus_dir, s, out_dir, labeler, log) for s in shards]
    results = []
    ctx = multiprocessing.get_context("spawn")  # no forked copies of torch/dagster state
    with ProcessPoolExecutor(min(workers, len(shards)), mp_context=ctx, initializer=_init_worker, initargs=(config,)) as pool:
        futures = [pool.submit(_label_in_worker, str(corpus_dir), s, str(out_dir)) for s in shards]
        for future in futures:
            stats = future.result()
            log(f"shard {stats['shard']}: {stats['docs']} documents, {stats['words']} words in {stats['seconds']} s")
            results.append(stats)
    return results
