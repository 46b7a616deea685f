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

from assets.partitions import checkpoint_keys, checkpoint_partitions, newest_per_run, unregistered
from assets.resources import LacyStorage
from assets.results import EVALUATION_INPUTS, EVALUATION_KEYS, checkpoint_dir, result_path, stale_evaluations
from assets.training import latest_checkpoint_of
from pipelines.shards import MANIFEST
from trainer.presets import REFERENCE

# Every complete checkpoint gets a partition; by default only the newest one of each run is
# evaluated when it appears (set LACY_EVALUATE_ALL_CHECKPOINTS=1 to evaluate every one).
EVALUATE_ALL = os.environ.get("LACY_EVALUATE_ALL_CHECKPOINTS", "") == "1"


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
