"""The project's Dagster instance for the commands that run outside the dagster CLI
(`python -m assets.register`, `python -m assets.recover`): the one of $DAGSTER_HOME, which
the Makefile sets to the repo root (`dagster.yaml` there, storage under `.dagster/`), as
`dagster dev` and the Makefile's `dagster` commands use it."""

import os
from pathlib import Path

from dagster import DagsterInstance

REPO_ROOT = Path(__file__).resolve().parent.parent


def project_instance() -> DagsterInstance:
    """$DAGSTER_HOME's instance; the repo root's when it is unset."""
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT))
    return DagsterInstance.get()
