"""The sensor requests no evaluation that a run of the instance is materializing for that
checkpoint (queued, starting or running), nor one already done: after `make run` it once
launched `nlu` and `validation_losses` twice, the second time while the first run was in flight,
because the partner appeared and the run key (the set of ready evaluations) changed."""

import json

import pytest
from dagster import AssetKey, DagsterEvent, DagsterEventType, DagsterRunStatus, RunRequest, instance_for_test
from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from assets.definitions import defs
from assets.evaluation import ACCEPTABILITY_JUDGE
from assets.jobs import EVALUATION_JOB
from assets.resources import JudgeResource, LacyStorage
from assets.results import result_path
from pipelines.shards import MANIFEST
from tests.assets.ticks import sensor_tick

LACY, BASELINE = "lacy/run-1/step-00000002", "baseline/run-1/step-00000002"


@pytest.fixture
def storage(tmp_path):
    storage = LacyStorage(root=str(tmp_path))
    storage.path("token_shards").mkdir()
    storage.path("token_shards", MANIFEST).write_text("{}")
    for key in (LACY, BASELINE):
        storage.path("models", key).mkdir(parents=True)
        storage.path("models", key, "lacy.json").write_text(json.dumps({"step": 2}))
    return storage


@pytest.fixture
def instance():
    with instance_for_test() as instance:
        yield instance


def tick(instance, storage):
    """One sensor evaluation (no judge configured), its new partitions added as the daemon would."""
    result = sensor_tick(instance, {"storage": storage, ACCEPTABILITY_JUDGE: JudgeResource()})
    return {r.partition_key: r for r in result.run_requests}, result


# where a queued run's code is (the run queue needs it): the code location of `dagster dev`
ORIGIN = RemoteJobOrigin(RemoteRepositoryOrigin(ManagedGrpcPythonEnvCodeLocationOrigin(
    LoadableTargetOrigin(module_name="assets.definitions")), "__repository__"), EVALUATION_JOB)
STATUS_OF = {DagsterEventType.RUN_ENQUEUED: DagsterRunStatus.QUEUED, DagsterEventType.RUN_STARTING: DagsterRunStatus.STARTING,
             DagsterEventType.RUN_START: DagsterRunStatus.STARTED}


def launch(instance, request, event=DagsterEventType.RUN_START, asset_selection=True, tags=None):
    """The run the daemon creates for `request`, moved on by the event the run coordinator or
    launcher reports (enqueued, starting, started)."""
    run = instance.create_run_for_job(
        evaluation_job_def(), status=DagsterRunStatus.NOT_STARTED, remote_job_origin=ORIGIN,
        asset_selection=frozenset(request.asset_selection) if asset_selection else None,
        tags=tags or {"dagster/partition": request.partition_key, "dagster/run_key": request.run_key})
    instance.report_dagster_event(DagsterEvent(event_type_value=event.value, job_name=run.job_name), run_id=run.run_id)
    assert instance.get_run_by_id(run.run_id).status == STATUS_OF[event]
    return run


def evaluation_job_def():
    return defs.resolve_job_def(EVALUATION_JOB)


def names(request):
    return sorted(k.to_user_string() for k in request.asset_selection)


def partner_appears(storage):
    storage.path("models", "reference").mkdir(parents=True)
    storage.path("models", "reference", "latest.json").write_text(
        json.dumps({"run_dir": "models/reference/run-1", "checkpoint": "models/reference/run-1/step-00000004"}))


@pytest.mark.parametrize("event", list(STATUS_OF))
def test_the_partner_appearing_requests_only_what_no_run_is_materializing(instance, storage, event):
    first, _ = tick(instance, storage)
    assert names(first[LACY]) == ["fact_leakage", "nlu", "validation_losses"]  # the cascade waits on the partner
    launch(instance, first[LACY], event)
    partner_appears(storage)
    second, _ = tick(instance, storage)
    assert names(second[LACY]) == ["cascade_generations"]  # not nlu, validation_losses, fact_leakage again
    assert second[LACY].run_key == f"evaluate:{LACY}:cascade_generations"
    assert names(second[BASELINE]) == ["cascade_generations", "fact_leakage", "nlu", "validation_losses"]  # no run of its own


def test_a_whole_evaluation_job_in_flight_blocks_every_evaluation_of_its_checkpoint(instance, storage):
    first, _ = tick(instance, storage)
    launch(instance, first[LACY], asset_selection=False)  # `make evaluate`: dagster job execute -j evaluation_job
    partner_appears(storage)
    requests, _ = tick(instance, storage)
    assert LACY not in requests and BASELINE in requests


def test_a_partition_range_in_flight_blocks_each_of_its_checkpoints(instance, storage):
    """`dagster asset materialize --partition-range` tags the run with the range's ends."""
    first, _ = tick(instance, storage)
    launch(instance, RunRequest(asset_selection=[AssetKey("nlu")]),
           tags={"dagster/asset_partition_range_start": BASELINE, "dagster/asset_partition_range_end": LACY})
    second, _ = tick(instance, storage)
    assert names(second[LACY]) == ["fact_leakage", "validation_losses"] and names(second[BASELINE]) == names(second[LACY])


def test_done_or_ended_runs_do_not_block(instance, storage):
    """A result file is done (not requested again); a run that failed is no longer in flight."""
    first, _ = tick(instance, storage)
    run = launch(instance, first[LACY])
    result_path(storage, LACY, "nlu").parent.mkdir(parents=True)
    result_path(storage, LACY, "nlu").write_text("{}")
    instance.report_run_failed(run)
    partner_appears(storage)
    second, _ = tick(instance, storage)
    assert names(second[LACY]) == ["cascade_generations", "fact_leakage", "validation_losses"]


def test_nothing_to_request_names_what_is_in_flight(instance, storage):
    first, _ = tick(instance, storage)
    for request in first.values():
        launch(instance, request)
    requests, skip = tick(instance, storage)
    assert not requests and f"{LACY}: nlu is in flight" in skip.skip_message
