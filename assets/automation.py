"""The sensor that evaluates new checkpoints (also those written by torchrun runs started
outside Dagster) and the schedule that re-evaluates checkpoints whose evaluation code or
data changed."""

import os

from dagster import (
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

from assets.evaluation import EVALUATION_KEYS, checkpoint_dir, checkpoint_partitions, stale_evaluations
from assets.resources import LacyStorage
from trainer.checkpoint import list_checkpoints

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


@sensor(
    name="new_checkpoints",
    asset_selection=AssetSelection.assets(*EVALUATION_KEYS),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Adds a partition for each new complete checkpoint under the models root and evaluates it.",
)
def new_checkpoints(context: SensorEvaluationContext, storage: LacyStorage) -> SensorResult | SkipReason:
    found = checkpoint_keys(storage)
    new = unregistered(found, context.instance)
    if not new:
        return SkipReason(f"no new checkpoints among {len(found)} under {storage.path('models')}")
    return SensorResult(
        run_requests=[RunRequest(partition_key=k, asset_selection=EVALUATION_KEYS, run_key=f"evaluate:{k}") for k in (sorted(new) if EVALUATE_ALL else newest_per_run(new))],
        dynamic_partitions_requests=[checkpoint_partitions.build_add_request(sorted(new))],
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
