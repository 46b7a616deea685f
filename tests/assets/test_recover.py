"""`assets.recover`: a run whose process was killed gives back its pool slot; a live one keeps it."""

import subprocess
import sys

from dagster import DagsterEvent, DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus

from assets.recover import release_dead_runs

POOL = "gpu"


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def started_run(instance: DagsterInstance, pid: int) -> str:
    run = instance.add_run(DagsterRun(job_name="__ASSET_JOB", status=DagsterRunStatus.STARTED))
    start = DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name, pid=pid)
    instance.report_dagster_event(start, run.run_id)
    instance.event_log_storage.claim_concurrency_slot(POOL, run.run_id, "baseline_model")
    return run.run_id


def test_killed_run_is_failed_and_frees_its_slot(tmp_path):
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        instance.event_log_storage.set_concurrency_slots(POOL, 1)
        killed = started_run(instance, dead_pid())
        assert instance.event_log_storage.get_concurrency_info(POOL).active_slot_count == 1

        assert release_dead_runs(instance) == [killed]

        assert instance.get_run_by_id(killed).status == DagsterRunStatus.FAILURE
        assert instance.event_log_storage.get_concurrency_info(POOL).active_slot_count == 0
        assert release_dead_runs(instance) == []


def test_live_run_keeps_its_slot_and_a_reused_pid_does_not(tmp_path):
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "dagster-run-worker"])
    stranger = subprocess.Popen(["sleep", "60"])  # a pid the kernel gave to something else
    try:
        with DagsterInstance.local_temp(str(tmp_path)) as instance:
            instance.event_log_storage.set_concurrency_slots(POOL, 2)
            live = started_run(instance, worker.pid)
            reused = started_run(instance, stranger.pid)

            assert release_dead_runs(instance) == [reused]

            assert instance.get_run_by_id(live).status == DagsterRunStatus.STARTED
            assert instance.event_log_storage.get_concurrency_info(POOL).active_slot_count == 1
    finally:
        worker.kill()
        stranger.kill()
