"""What replaced the .pth that set DAGSTER_MODULE_NAME/DAGSTER_HOME: the Makefile runs the jobs
of `assets/jobs.py` by name (`-m assets.definitions`, DAGSTER_HOME the repo root unless set),
each selecting what its stage materialized before, and `[tool.dagster]` in pyproject.toml
points the workspace commands (`dagster dev`, `dagster schedule list`) at the definitions."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from dagster import AssetKey

from assets.definitions import defs
from assets.partitions import checkpoint_partitions, shard_partitions
from trainer.masks import METHODS

ROOT = Path(__file__).parents[2]

STAGES = {
    "corpus_job": {"raw_corpus", "tokenizer"},
    "shards_job": {"spacy_word_labels", "token_shards"},
    "lacy_job": {"lmlm_judge_labels", "lacy_model"},
    "reference_job": {"extra_token_shards", "reference_model"},
    "reference_losses_job": {"reference_losses"},
    "methods_job": {f"{m}_model" for m in METHODS},
    "knowledge_job": {"knowledge_source"},
    "evaluation_job": {"validation_losses", "cascade_generations", "factscore", "fact_leakage", "nlu", "acceptability"},
    "report_job": {"comparison_report"},
}


def test_the_makefile_runs_each_stage_as_a_job():
    makefile = (ROOT / "Makefile").read_text()
    assert re.findall(r"\$\(JOB\) (\w+)", makefile) == list(STAGES)
    assert "-m assets.definitions" in makefile and "DAGSTER_HOME" in makefile


@pytest.mark.parametrize(("job", "assets"), STAGES.items())
def test_each_job_selects_its_stage(job, assets):
    graph = defs.resolve_asset_graph()
    selection = next(j for j in defs.jobs if j.name == job).selection
    assert selection.resolve(graph) == {AssetKey(a) for a in assets}


def test_partitioned_stages():
    assert defs.resolve_job_def("shards_job").partitions_def == shard_partitions
    assert defs.resolve_job_def("evaluation_job").partitions_def == checkpoint_partitions


def test_pyproject_points_the_workspace_commands_at_the_definitions():
    block = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert block["module_name"] == "assets.definitions"


@pytest.mark.slow
def test_schedule_list_from_the_repo_root(tmp_path):
    """`dagster schedule list` in a copy of the repo root, with no -m (`[tool.dagster]`) and
    DAGSTER_HOME as the Makefile sets it: the instance of dagster.yaml there."""
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_MODULE_NAME"}
    env |= {"DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(ROOT), "DAGSTER_HOME": str(tmp_path)}
    for name in ("dagster.yaml", "assets", "pyproject.toml"):
        (tmp_path / name).symlink_to(ROOT / name)
    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run([str(dagster), "schedule", "list"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Schedule: reevaluate_stale_checkpoints" in done.stdout
    assert (tmp_path / ".dagster" / "storage").is_dir()  # the instance of dagster.yaml, not a temporary one
