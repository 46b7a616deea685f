"""Release what a killed run left in the repo's Dagster instance.

A `dagster job execute` or `dagster asset materialize` (`make models`, ...) killed with
SIGKILL, an out-of-memory kill or a reboot never marks its run as ended, so the run stays
STARTED and keeps its slot of the `gpu` pool: every later training run then waits forever
on "Step blocked by limit for pool gpu". This marks such runs failed and frees their slots;
a run whose process is still alive on this machine is left alone. `make run`, `make models`
and `make evaluate` call it first.

    python -m assets.recover

Dagster has no public API for what this does: reading a run's pid (`all_logs`), failing a
run (`report_run_failed`) and freeing its slots (`event_log_storage`) are instance methods
outside its documented API; `run_pid` and `release_dead_runs` are the only places that use
them (tests/assets/test_recover.py pins their behaviour).
"""

import argparse
import os
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

from assets.instance import project_instance

UNFINISHED = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def process_alive(pid: int) -> bool:
    """Whether `pid` is a live Dagster process on this machine (a reused pid that runs
    something else counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    return not cmdline.exists() or b"dagster" in cmdline.read_bytes()


def run_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that executes the run, from its RUN_START event."""
    starts = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
    return starts[0].dagster_event.pid if starts and starts[0].dagster_event else None


def release_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark every unfinished run without a live process failed and free its pool slots;
    return their ids. A run that never started (no pid yet) is left alone."""
    released = []
    for record in instance.get_run_records(filters=RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        pid = run_pid(instance, run.run_id)
        if pid is None or process_alive(pid):
            continue
        instance.report_run_failed(run, f"process {pid} is gone (killed); released by assets.recover")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released


def main() -> None:
    argparse.ArgumentParser(prog="python -m assets.recover", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    with project_instance() as instance:
        for run_id in release_dead_runs(instance):
            print(f"run {run_id}: its process is gone; marked failed, pool slots freed")


if __name__ == "__main__":
    main()
