"""The sensor that evaluates new checkpoints (also those written by torchrun runs started
outside Dagster) and the schedule that re-evaluates checkpoints whose evaluation code or
data changed.

The sensor requests only the evaluations whose inputs exist (`waiting_on`): after `make run`
there is no reference model yet, so the cascade and FactScore of `lacy_model` wait, are
named as waiting in the sensor's log and skip reason, and are requested on a later tick once
their inputs appear. It never requests an evaluation that is done (its result file exists) or
in flight for that checkpoint (a run of the instance that has not finished selects it)."""

import os
from collections import defaultdict

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from assets.jobs import evaluation_job
from assets.partitions import checkpoint_keys, checkpoint_partitions, newest_per_run, unregistered
from assets.resources import LacyStorage
from assets.results import EVALUATION_INPUTS, EVALUATION_KEYS, checkpoint_dir, result_path, stale_evaluations
from assets.training import latest_checkpoint_of
from pipelines.shards import MANIFEST
from trainer.presets import REFERENCE

# Every complete checkpoint gets a partition; by default only the newest one of each run is
# evaluated when it appears (set LACY_EVALUATE_ALL_CHECKPOINTS=1 to evaluate every one).
EVALUATE_ALL = os.environ.get("LACY_EVALUATE_ALL_CHECKPOINTS", "") == "1"
# runs that have not finished (queued, starting, running, being canceled, suspended)
IN_FLIGHT = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
             DagsterRunStatus.CANCELING, DagsterRunStatus.SUSPENDED]
PARTITION_TAG, RANGE_START_TAG, RANGE_END_TAG = ("dagster/partition", "dagster/asset_partition_range_start",
                                                 "dagster/asset_partition_range_end")


def waiting_on(storage: LacyStorage) -> dict[str, list[str]]:
    """Per evaluation (default config), the upstream assets it needs that do not exist yet."""
    shards = [] if storage.path("token_shards", MANIFEST).exists() else ["token_shards"]
    partner = [] if latest_checkpoint_of(storage, REFERENCE) else ["reference_model (the cascade partner)"]
    knowledge = [] if storage.path("knowledge", "source.json").exists() else ["knowledge_source"]
    return {"validation_losses": shards, "cascade_generations": partner, "factscore": partner + knowledge,
            "fact_leakage": [], "nlu": []}


def in_flight(instance: DagsterInstance) -> dict[str, set[str]]:
    """Checkpoint key -> the evaluations that runs of `instance` not yet finished (`IN_FLIGHT`)
    materialize for it: a run's asset selection (a run without one is a whole job: of
    `evaluation_job`, every evaluation), for its partition or each key of its partition range."""
    busy: dict[str, set[str]] = defaultdict(set)
    for record in instance.get_run_records(RunsFilter(statuses=IN_FLIGHT)):
        run = record.dagster_run
        if run.asset_selection is not None:
            names = {key.to_user_string() for key in run.asset_selection} & set(EVALUATION_INPUTS)
        else:
            names = set(EVALUATION_INPUTS) if run.job_name == evaluation_job.name else set()
        for key in _run_partitions(run.tags, instance) if names else ():
            busy[key] |= names
    return busy


def _run_partitions(tags: dict[str, str], instance: DagsterInstance) -> list[str]:
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    keys = instance.get_dynamic_partitions(checkpoint_partitions.name)  # a range runs in their order
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    return keys[keys.index(start) : keys.index(end) + 1] if start in keys and end in keys else []


def pending_evaluations(storage: LacyStorage, keys: list[str], busy: dict[str, set[str]] | None = None
                        ) -> tuple[list[RunRequest], list[str]]:
    """For each checkpoint key: a request for its evaluations that have no result yet, are not
    in flight (`busy`, from `in_flight`) and whose inputs exist, and a line per evaluation still
    waiting or in flight. The run key names the evaluations, so a tick requests the same set
    once and a later tick requests what has become ready."""
    waiting, busy = waiting_on(storage), busy or {}
    requests, lines = [], []
    for key in keys:
        todo = [name for name in EVALUATION_INPUTS if not result_path(storage, key, name).exists()]
        lines += [f"{key}: {name} is in flight" for name in todo if name in busy.get(key, ())]
        todo = [name for name in todo if name not in busy.get(key, ())]
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
    newest of each run: only the evaluations whose inputs exist and that no run is materializing;
    the others when they appear."""
    found = checkpoint_keys(storage)
    new = unregistered(found, context.instance)
    keys = sorted(found) if EVALUATE_ALL else newest_per_run(found)
    requests, waiting = pending_evaluations(storage, keys, in_flight(context.instance))
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
