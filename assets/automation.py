"""The sensor that evaluates new checkpoints (also those written by torchrun runs started
outside Dagster) and the schedule that re-evaluates checkpoints whose evaluation code or
data changed, both built from the registry of evaluations (`assets.registry.Evaluation`).

The sensor requests only the evaluations whose inputs exist (`Evaluation.waits_on`): after
`make run` there is no reference model yet, so the cascade and FactScore of `lacy_model`
wait, are named as waiting in the sensor's log and skip reason, and are requested on a later
tick once their inputs appear; acceptability waits until a judge is configured. It never
requests an evaluation that is done (its result file exists) or in flight for that
checkpoint (a run of the instance that has not finished selects it)."""

import os
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetSelection,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from assets.jobs import EVALUATION_JOB
from assets.partitions import checkpoint_keys, checkpoint_partitions, newest_per_run, unregistered
from assets.registry import Evaluation
from assets.results import checkpoint_dir, result_path, stale_evaluations

# Every complete checkpoint gets a partition; by default only the newest one of each run is
# evaluated when it appears (set LACY_EVALUATE_ALL_CHECKPOINTS=1 to evaluate every one).
EVALUATE_ALL = os.environ.get("LACY_EVALUATE_ALL_CHECKPOINTS", "") == "1"
# runs that have not finished (queued, starting, running, being canceled, suspended)
IN_FLIGHT = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED,
             DagsterRunStatus.CANCELING, DagsterRunStatus.SUSPENDED]
PARTITION_TAG, RANGE_START_TAG, RANGE_END_TAG = ("dagster/partition", "dagster/asset_partition_range_start",
                                                 "dagster/asset_partition_range_end")


def waiting_on(resources: Any, evaluations: Sequence[Evaluation]) -> dict[str, list[str]]:
    """Per evaluation (default config), the inputs it needs that do not exist yet, given the
    resources (`storage` and those the evaluations name)."""
    return {e.name: e.waits_on(resources) for e in evaluations}


def in_flight(instance: DagsterInstance, names: Sequence[str]) -> dict[str, set[str]]:
    """Checkpoint key -> the evaluations (of `names`) that runs of `instance` not yet finished
    (`IN_FLIGHT`) materialize for it: a run's asset selection (a run without one is a whole
    job: of `evaluation_job`, every evaluation), for its partition or each key of its
    partition range."""
    busy: dict[str, set[str]] = defaultdict(set)
    for record in instance.get_run_records(RunsFilter(statuses=IN_FLIGHT)):
        run = record.dagster_run
        if run.asset_selection is not None:
            selected = {key.to_user_string() for key in run.asset_selection} & set(names)
        else:
            selected = set(names) if run.job_name == EVALUATION_JOB else set()
        for key in _run_partitions(run.tags, instance) if selected else ():
            busy[key] |= selected
    return busy


def _run_partitions(tags: dict[str, str], instance: DagsterInstance) -> list[str]:
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    keys = instance.get_dynamic_partitions(checkpoint_partitions.name)  # a range runs in their order
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    return keys[keys.index(start) : keys.index(end) + 1] if start in keys and end in keys else []


def pending_evaluations(resources: Any, keys: list[str], evaluations: Sequence[Evaluation],
                        busy: dict[str, set[str]] | None = None) -> tuple[list[RunRequest], list[str]]:
    """For each checkpoint key: a request for its evaluations that have no result yet, are not
    in flight (`busy`, from `in_flight`) and whose inputs exist, and a line per evaluation still
    waiting or in flight. The run key names the evaluations, so a tick requests the same set
    once and a later tick requests what has become ready."""
    waiting, busy, storage = waiting_on(resources, evaluations), busy or {}, resources.storage
    requests, lines = [], []
    for key in keys:
        todo = [e for e in evaluations if not result_path(storage, key, e.name).exists()]
        lines += [f"{key}: {e.name} is in flight" for e in todo if e.name in busy.get(key, ())]
        todo = [e for e in todo if e.name not in busy.get(key, ())]
        ready = [e for e in todo if not waiting[e.name]]
        lines += [f"{key}: {e.name} waits on {', '.join(waiting[e.name])}" for e in todo if waiting[e.name]]
        if ready:
            requests.append(RunRequest(partition_key=key, asset_selection=[e.key for e in ready],
                                       run_key=f"evaluate:{key}:{'+'.join(e.name for e in ready)}"))
    return requests, lines


def checkpoint_sensor(evaluations: Sequence[Evaluation]) -> SensorDefinition:
    """`new_checkpoints` over `evaluations`: it needs `storage` and the resources they name."""

    @sensor(
        name="new_checkpoints",
        asset_selection=AssetSelection.assets(*(e.key for e in evaluations)),
        minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        required_resource_keys={"storage", *(key for e in evaluations for key in e.resources)},
    )
    def new_checkpoints(context: SensorEvaluationContext) -> SensorResult | SkipReason:
        """Adds a partition for each new complete checkpoint under the models root and evaluates the
        newest of each run: only the evaluations whose inputs exist and that no run is materializing;
        the others when they appear."""
        storage = context.resources.storage
        found = checkpoint_keys(storage)
        new = unregistered(found, context.instance)
        keys = sorted(found) if EVALUATE_ALL else newest_per_run(found)
        busy = in_flight(context.instance, [e.name for e in evaluations])
        requests, waiting = pending_evaluations(context.resources, keys, evaluations, busy)
        for line in waiting:
            context.log.info(line)
        if not new and not requests:
            return SkipReason(f"nothing to evaluate among {len(found)} checkpoints under {storage.path('models')}"
                              + "".join(f"; {line}" for line in waiting))
        return SensorResult(
            run_requests=requests,
            dynamic_partitions_requests=[checkpoint_partitions.build_add_request(sorted(new))] if new else [],
        )

    return new_checkpoints


def reevaluation_schedule(evaluations: Sequence[Evaluation]) -> ScheduleDefinition:
    """`reevaluate_stale_checkpoints` over `evaluations` (`stale_evaluations`)."""

    @schedule(
        name="reevaluate_stale_checkpoints",
        cron_schedule="0 3 * * *",
        target=AssetSelection.assets(*(e.key for e in evaluations)),
        default_status=DefaultScheduleStatus.RUNNING,
        required_resource_keys={"storage"},
        description="Nightly: re-runs the evaluations of every checkpoint whose evaluation code, data or weights changed "
        "since it was evaluated (default config).",
    )
    def reevaluate_stale_checkpoints(context: ScheduleEvaluationContext):
        storage = context.resources.storage
        requests = []
        for key in context.instance.get_dynamic_partitions(checkpoint_partitions.name):
            if not checkpoint_dir(storage, key).exists():
                continue
            stale = stale_evaluations(storage, key, evaluations)
            if stale:
                requests.append(RunRequest(partition_key=key, asset_selection=stale))
        return requests or SkipReason("every evaluated checkpoint is up to date")

    return reevaluate_stale_checkpoints
