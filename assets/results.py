"""Evaluation results: each evaluation of a checkpoint writes
`artifacts/evaluation/<partition>/<name>.json` with an `inputs_fingerprint` (its code and data,
`Evaluation.inputs_fingerprint`, and the evaluated checkpoint); a result whose fingerprint
differs from the current one is stale, and the re-evaluation schedule runs it again."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dagster import AssetKey

from assets.resources import LacyStorage
from evaluation.checkpoint import checkpoint_fingerprint
from pipelines.files import read_json, write_json

if TYPE_CHECKING:
    from assets.registry import Evaluation

# the parts of a result that record where something lies: relative to the storage root
RECORDED_PATHS = ("checkpoint", "baseline_checkpoint", "dataset")


def checkpoint_dir(storage: LacyStorage, partition_key: str) -> Path:
    return storage.path("models", partition_key)


def result_path(storage: LacyStorage, partition_key: str, name: str) -> Path:
    return storage.path("evaluation", partition_key, f"{name}.json")


def read_result(storage: LacyStorage, partition_key: str, name: str) -> dict | None:
    path = result_path(storage, partition_key, name)
    return read_json(path) if path.exists() else None


def save_result(storage: LacyStorage, partition_key: str, evaluation: Evaluation, result: dict) -> Path:
    """Write `result` of `evaluation` with its recorded
    paths relative to the root, its inputs fingerprint and its partition; returns the file.
    The checkpoint's part of the fingerprint is the one the result records
    (`result["checkpoint"]["fingerprint"]`, hashed when the evaluation loaded it): the
    checkpoint is not hashed again."""
    checkpoint = result.get("checkpoint") or {}
    if "fingerprint" not in checkpoint:
        raise ValueError(f"{evaluation.name} of {partition_key}: the result records no checkpoint fingerprint "
                         "(result['checkpoint'] = LoadedCheckpoint.identity())")
    result = {**result, **{k: {**result[k], "path": storage.ref(result[k]["path"])} for k in RECORDED_PATHS if k in result}}
    result = {**result, "inputs_fingerprint": evaluation.inputs_fingerprint(checkpoint["fingerprint"]), "partition": partition_key}
    path = result_path(storage, partition_key, evaluation.name)
    write_json(path, result)
    return path


def stale_evaluations(storage: LacyStorage, partition_key: str, evaluations: Sequence[Evaluation]) -> list[AssetKey]:
    """Of `evaluations`, those of a checkpoint that ran before
    on other code, data or weights than there are now (their stored inputs fingerprint
    differs), and those that read the results of a stale one (`Evaluation.reads`)."""
    stored = {e.name: r for e in evaluations if (r := read_result(storage, partition_key, e.name)) is not None}
    if not stored:
        return []
    checkpoint_sha = checkpoint_fingerprint(checkpoint_dir(storage, partition_key))
    stale = {e.name for e in evaluations
             if e.name in stored and stored[e.name].get("inputs_fingerprint") != e.inputs_fingerprint(checkpoint_sha)}
    grown = True
    while grown:
        readers = {e.name for e in evaluations if e.name in stored and stale & set(e.reads)}
        grown = not readers <= stale
        stale |= readers
    return sorted((AssetKey(name) for name in stale), key=lambda k: k.path)
