"""The testbed in the DAG: a cell's stages keep what is current and redo what changed (by
fingerprints, never by step counts), and (slow) the smoke scenario end to end through every
asset of group `testbed`."""

from dataclasses import replace
from pathlib import Path

import pytest
from dagster import DagsterInstance, MultiPartitionKey, PipesSubprocessClient, materialize

from assets import testbed
from assets.resources import LacyStorage
from evaluation.testbed import cell as cell_module
from evaluation.testbed import evaluate
from evaluation.testbed.cell import MODELS, SCENARIOS, Cell, is_fresh, mark_fresh
from pipelines.files import write_json
from pipelines.shards import MANIFEST


def test_a_stage_is_kept_only_with_its_fingerprint(tmp_path):
    assert not is_fresh(tmp_path, "abc")
    mark_fresh(tmp_path, "abc")
    assert is_fresh(tmp_path, "abc") and not is_fresh(tmp_path, "abd")


def fake_inputs(cell: Cell) -> None:
    for name in ("token_shards", "extra_token_shards", "lmlm_judge_labels", "reference_losses"):
        write_json(cell.path(name, MANIFEST), {"fingerprint": f"{name}-1"})
    write_json(cell.path("token_shards", "stage.json"), {"fingerprint": "probe-1"})


def test_a_models_run_directory_names_its_steps_data_and_seed(tmp_path, monkeypatch):
    """A run of other steps (a quick probe under the same root), data or seed never passes for
    the scenario's run: its directory is another."""
    cell = Cell.of(tmp_path, "default", 0)
    fake_inputs(cell)
    runs = {name: testbed.run_dir(cell, name) for name in MODELS}
    assert len(set(runs.values())) == len(MODELS)
    shorter = replace(cell, scenario=replace(cell.scenario, steps=0.01))
    assert testbed.run_dir(shorter, "lacy") != runs["lacy"]
    write_json(cell.path("token_shards", MANIFEST), {"fingerprint": "token_shards-2"})
    assert testbed.run_dir(cell, "lacy") != runs["lacy"]
    assert testbed.trained(cell, "lacy") is None  # nothing trained there


def test_an_evaluation_is_current_only_for_its_code_config_world_and_weights(tmp_path, monkeypatch):
    cell = Cell.of(tmp_path, "default", 0)
    base = evaluate.inputs_fingerprint(cell, "w", "p", "b")
    assert evaluate.inputs_fingerprint(cell, "w2", "p", "b") != base  # other weights
    assert evaluate.inputs_fingerprint(cell, "w", "p2", "b") != base  # another partner
    assert evaluate.inputs_fingerprint(Cell.of(tmp_path, "default", 1), "w", "p", "b") != base  # another world
    fewer = replace(cell, scenario=replace(cell.scenario, evaluation=replace(cell.scenario.evaluation, tail_people=10)))
    assert evaluate.inputs_fingerprint(fewer, "w", "p", "b") != base
    monkeypatch.setattr(evaluate, "CODE", "changed")
    assert evaluate.inputs_fingerprint(cell, "w", "p", "b") != base


def test_every_scenario_is_a_partition_and_the_sweep_spans_lengths_and_sizes():
    keys = testbed.testbed_cells.get_partition_keys()
    assert MultiPartitionKey({"scenario": "default", "seed": "0"}) in keys
    assert set(testbed.testbed_scenarios.get_partition_keys()) == set(SCENARIOS)
    sweep = cell_module.SWEEP
    assert len({s.steps for s in sweep.values()}) >= 3 and len({s.world.people for s in sweep.values()}) >= 3
    assert "smoke" not in sweep


@pytest.mark.slow
def test_the_smoke_scenario_through_every_testbed_asset(tmp_path):
    storage = LacyStorage(root=str(tmp_path / "artifacts"))
    resources = {"storage": storage, "pipes_subprocess_client": PipesSubprocessClient()}
    cell_assets = [a for a in testbed.TESTBED_ASSETS if a not in (testbed.testbed_report, testbed.testbed_sweep_report)]
    key = MultiPartitionKey({"scenario": "smoke", "seed": "0"})
    first = materialize(cell_assets, resources=resources, partition_key=key)
    assert first.success
    cell = Cell.of(storage.path(), "smoke", 0)
    for name in MODELS:
        assert cell.evaluation_file(name).exists()
    assert (cell.path("evaluation", "baseline-acceptability") / "acceptability_tokens.parquet").exists()
    instance = DagsterInstance.ephemeral()
    again = materialize(cell_assets, resources=resources, partition_key=key, instance=instance)  # everything current
    assert again.success
    logs = [e.user_message for e in instance.all_logs(again.run_id)]
    assert sum("complete, kept" in m for m in logs) == len(MODELS)  # no model trained again
    assert sum(m.endswith(": current, kept") for m in logs) == len(MODELS)  # nor evaluated again
    assert sum("(fingerprint" in m and m.endswith("kept") for m in logs) == 6  # nor any data stage, nor the reference losses
    report = materialize([testbed.testbed_report], resources=resources, partition_key="smoke", selection=[testbed.testbed_report])
    assert report.success
    text = (Path(storage.path("testbed", "smoke", "report", "report.md"))).read_text()
    for section in ("The paper's claims, measured", "Figure 2 analogue", "The mechanism", "Figure 3 analogue"):
        assert section in text
