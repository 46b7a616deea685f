"""The sensor that evaluates new checkpoints (also those written by torchrun runs started
outside Dagster) and the schedule that re-evaluates checkpoints whose evaluation code or
data changed.

The sensor requests only the evaluations whose inputs exist (`waiting_on`): after `make run`
there is no reference model yet, so the cascade and FactScore of `lacy_model` wait, are
named as waiting in the sensor's log and skip reason, and are requested on a later tick once
their inputs appear."""

import os

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from assets.evaluation import (
    EVALUATION_INPUTS,
    EVALUATION_KEYS,
    checkpoint_dir,
    checkpoint_partitions,
    latest_checkpoint_of,
    result_path,
    stale_evaluations,
)
from assets.resources import LacyStorage
from pipelines.shards import MANIFEST
from trainer.checkpoint import list_checkpoints
from trainer.presets import REFERENCE

# Every complete checkpoint gets a partition; by default only the newest one of each run is
# evaluated when it appears (set LACY_EVALUATE_ALL_CHECKPOINTS=1 to evaluate every one).
EVALUATE_ALL = os.environ.get("LACY_EVALUATE_ALL_CHECKPOINTS", "") == "1"


def checkpoint_keys(storage: LacyStorage) -> dict[str, str]:
    """partition key (path under the models root) -> run directory, for every complete checkpoint."""
    root = storage.path("models")
    return {str(c.path.relative_to(root)): str(c.run_dir) for c in list_checkpoints(root)}


def unregistered(found: dict[str, str], instance: DagsterInstance) -> dict[str, str]:
    """The checkpoints of `found` that are not partitions of the evaluation assets yet."""
    known = set(instance.get_dynamic_partitions(checkpoint_partitions.name))
    return {k: run for k, run in found.items() if k not in known}


def newest_per_run(keys: dict[str, str]) -> list[str]:
    newest: dict[str, str] = {}
    for key, run in sorted(keys.items()):  # step-XXXXXXXX sorts by step
        newest[run] = key
    return sorted(newest.values())


def waiting_on(storage: LacyStorage) -> dict[str, list[str]]:
    """Per evaluation (default config), the upstream assets it needs that do not exist yet."""
    shards = [] if storage.path("token_shards", MANIFEST).exists() else ["token_shards"]
    partner = [] if latest_checkpoint_of(storage, REFERENCE) else ["reference_model (the cascade partner)"]
    knowledge = [] if storage.path("knowledge", "source.json").exists() else ["knowledge_source"]
    return {"validation_losses": shards, "cascade_generations": partner, "factscore": partner + knowledge,
            "fact_leakage": [], "nlu": []}


def pending_evaluations(storage: LacyStorage, keys: list[str]) -> tuple[list[RunRequest], list[str]]:
    """For each checkpoint key: a request for its evaluations that have no result yet and whose
    inputs exist, and a line per evaluation still waiting. The run key names the evaluations, so
    a tick requests the same set once and a later tick requests what has become ready."""
    waiting = waiting_on(storage)
    requests, lines = [], []
    for key in keys:
        todo = [name for name in EVALUATION_INPUTS if not result_path(storage, key, name).exists()]
        ready = [name for name in todo if not waiting[name]]
        lines += [f"{key}: {name} waits on {', '.join(waiting[name])}" for name in todo if waiting[name]]
        if ready:
            requests.append(RunRequest(partition_key=key, asset_selection=[AssetKey(name) for name in ready],
                                       run_key=f"evaluate:{key}:{'+'.join(ready)}"))
    return requests, lines


@sensor(
    name="new_checkpoints",
    asset_selection=AssetSelection.assets(*EVALUATION_KEYS),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
)
def new_checkpoints(context: SensorEvaluationContext, storage: LacyStorage) -> SensorResult | SkipReason:
    """Adds a partition for each new complete checkpoint under the models root and evaluates the
    newest of each run: only the evaluations whose inputs exist; the others when they appear."""
    found = checkpoint_keys(storage)
    new = unregistered(found, context.instance)
    requests, waiting = pending_evaluations(storage, sorted(found) if EVALUATE_ALL else newest_per_run(found))
    for line in waiting:
        context.log.info(line)
    if not new and not requests:
        return SkipReason(f"nothing to evaluate among {len(found)} checkpoints under {storage.path('models')}"
                          + "".join(f"; {line}" for line in waiting))
    return SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[checkpoint_partitions.build_add_request(sorted(new))] if new else [],
    )


@schedule(
    name="reevaluate_stale_checkpoints",
    cron_schedule="0 3 * * *",
    target=AssetSelection.assets(*EVALUATION_KEYS),
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: re-runs the evaluations of every checkpoint whose evaluation code, data or weights changed "
    "since it was evaluated (default config).",
)
def reevaluate_stale_checkpoints(context: ScheduleEvaluationContext, storage: LacyStorage):
    requests = []
    for key in context.instance.get_dynamic_partitions(checkpoint_partitions.name):
        if not checkpoint_dir(storage, key).exists():
            continue
        stale = stale_evaluations(storage, key)
        if stale:
            requests.append(RunRequest(partition_key=key, asset_selection=stale))
    return requests or SkipReason("every evaluated checkpoint is up to date")
