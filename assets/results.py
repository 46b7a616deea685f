"""Evaluation results: each evaluation of a checkpoint writes
`artifacts/evaluation/<partition>/<name>.json` with an `inputs_fingerprint` (evaluation code +
data + checkpoint); a result whose fingerprint differs from the current one is stale, and the
re-evaluation schedule runs it again."""

from functools import cache
from pathlib import Path

from dagster import AssetKey

from assets.resources import LacyStorage
from evaluation import backends, cascade, checkpoint
from evaluation.checkpoint import checkpoint_fingerprint
from evaluation.factscore import atomic_facts, entities, knowledge
from evaluation.factscore import proxy as fact_overlap
from evaluation.factscore import score as factscore_lib
from evaluation.measures import leakage, nlu, validation
from pipelines.files import code_fingerprint, file_sha256, fingerprint, read_json, write_json

# the code and data each evaluation depends on: a change makes its results stale
EVALUATION_INPUTS = {
    "validation_losses": ((validation, checkpoint), ()),
    "cascade_generations": ((cascade, backends, entities, checkpoint), ()),  # backends: the package, every engine
    "factscore": ((factscore_lib, atomic_facts, fact_overlap, knowledge, backends, entities), ()),
    "fact_leakage": ((leakage, checkpoint), (leakage.POPQA_FILE, leakage.BIGBENCH_FILE)),
    "nlu": ((nlu, checkpoint), (nlu.LM_EVAL_MODEL_FILE, *sorted(Path(nlu.NLU_DIR).rglob("*.xz")))),
}
EVALUATION_KEYS = [AssetKey(name) for name in EVALUATION_INPUTS]  # each writes <partition>/<name>.json

# the parts of a result that record where something lies: relative to the storage root
RECORDED_PATHS = ("checkpoint", "baseline_checkpoint", "dataset")


def evaluation_code_version(name: str) -> str:
    return code_fingerprint(*EVALUATION_INPUTS[name][0])


@cache
def _data_sha(path: Path) -> str:
    return file_sha256(path)


def inputs_fingerprint(name: str, checkpoint_sha: str) -> str:
    """`checkpoint_sha`: `checkpoint_fingerprint` of the evaluated checkpoint (hashing the
    weights once serves every evaluation of it)."""
    modules, files = EVALUATION_INPUTS[name]
    return fingerprint(code_fingerprint(*modules), [_data_sha(Path(f)) for f in files], checkpoint_sha)


def checkpoint_dir(storage: LacyStorage, partition_key: str) -> Path:
    return storage.path("models", partition_key)


def result_path(storage: LacyStorage, partition_key: str, name: str) -> Path:
    return storage.path("evaluation", partition_key, f"{name}.json")


def read_result(storage: LacyStorage, partition_key: str, name: str) -> dict | None:
    path = result_path(storage, partition_key, name)
    return read_json(path) if path.exists() else None


def save_result(storage: LacyStorage, partition_key: str, name: str, result: dict) -> Path:
    """Write `result` with its recorded paths relative to the root, its inputs fingerprint
    and its partition; returns the file."""
    ckpt = checkpoint_dir(storage, partition_key)
    result = {**result, **{k: {**result[k], "path": storage.ref(result[k]["path"])} for k in RECORDED_PATHS if k in result}}
    result = {**result, "inputs_fingerprint": inputs_fingerprint(name, checkpoint_fingerprint(ckpt)), "partition": partition_key}
    path = result_path(storage, partition_key, name)
    write_json(path, result)
    return path


def stale_evaluations(storage: LacyStorage, partition_key: str) -> list[AssetKey]:
    """The evaluations of a checkpoint that ran before on other code, data or weights than
    there are now (their stored inputs fingerprint differs)."""
    stored = {name: r for name in EVALUATION_INPUTS if (r := read_result(storage, partition_key, name)) is not None}
    if not stored:
        return []
    checkpoint_sha = checkpoint_fingerprint(checkpoint_dir(storage, partition_key))
    stale = [AssetKey(name) for name, r in stored.items() if r.get("inputs_fingerprint") != inputs_fingerprint(name, checkpoint_sha)]
    if AssetKey("cascade_generations") in stale and "factscore" in stored:
        stale.append(AssetKey("factscore"))  # scores the generations
    return sorted(set(stale), key=lambda k: k.path)
