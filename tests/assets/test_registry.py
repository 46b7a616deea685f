"""One registry of evaluations: a toy evaluation registered in one place (an `Evaluation`
entry in the list given to `build_definitions`) is selected by `evaluation_job`, requested
by the sensor once its input exists (logged as waiting before), covered by the staleness
schedule, and shown in the comparison report by its section."""

import json
import sys

from dagster import AssetKey, Config, instance_for_test

from assets.definitions import build_definitions
from assets.evaluation import ACCEPTABILITY_JUDGE, EVALUATIONS
from assets.registry import Evaluation, Measured
from assets.resources import JudgeResource
from assets.results import checkpoint_dir, read_result, result_path
from evaluation.checkpoint import checkpoint_fingerprint, read_checkpoint
from evaluation.report.markdown import titled_table
from evaluation.report.section import Section
from tests.assets.ticks import schedule_tick, sensor_tick


class ToyConfig(Config):
    scale: float = 2.0


def toy_measure(context, config: ToyConfig, storage) -> Measured:
    """The toy: the checkpoint's step plus `scale`."""
    checkpoint = read_checkpoint(checkpoint_dir(storage, context.partition_key))
    value = checkpoint.step + config.scale
    identity = {"path": str(checkpoint.path), "fingerprint": checkpoint_fingerprint(checkpoint.path)}
    return Measured({"checkpoint": identity, "value": value}, {"value": value})


def toy_input_missing(resources) -> list[str]:
    return [] if resources.storage.path("toy_input.txt").exists() else ["toy_input.txt"]


def toy_section(rows, out) -> Section:
    table = [{"model": m, "toy value": r["toy"]["value"]} for m, r in rows.items() if r["toy"]]
    return Section(titled_table("Toy", table), tables={"toy": table or "no toy results yet"})


TOY = Evaluation("toy", toy_measure, (sys.modules[__name__],), waits_on=toy_input_missing, section=toy_section)


def test_a_toy_evaluation_registered_in_one_place(tiny_storage):
    storage, key = tiny_storage
    resources = {"storage": storage, ACCEPTABILITY_JUDGE: JudgeResource()}
    defs = build_definitions([*EVALUATIONS, TOY], resources)  # the one place
    for other in EVALUATIONS:  # every other evaluation is done: only the toy can be pending
        result_path(storage, key, other.name).parent.mkdir(parents=True, exist_ok=True)
        result_path(storage, key, other.name).write_text("{}")

    job = defs.resolve_job_def("evaluation_job")
    assert AssetKey("toy") in job.asset_layer.executable_asset_keys

    with instance_for_test() as instance:
        first = sensor_tick(instance, resources, defs)
        assert first.dynamic_partitions_requests and not first.run_requests
        waiting = sensor_tick(instance, resources, defs)
        assert not waiting.run_requests and f"{key}: toy waits on toy_input.txt" in waiting.skip_message
        storage.path("toy_input.txt").write_text("ready")
        (request,) = sensor_tick(instance, resources, defs).run_requests
        assert request.asset_selection == [AssetKey("toy")] and request.partition_key == key

        evaluated = job.execute_in_process(instance=instance, partition_key=key, asset_selection=[AssetKey("toy")],
                                           run_config={"ops": {"toy": {"config": {"scale": 3.0}}}})
        assert evaluated.success
        stored = read_result(storage, key, "toy")
        sha = checkpoint_fingerprint(checkpoint_dir(storage, key))
        assert stored["value"] == 3.0 and stored["inputs_fingerprint"] == TOY.inputs_fingerprint(sha)
        assert stored["checkpoint"]["path"] == f"models/{key}"  # relative to the storage root

        (before,) = schedule_tick(instance, resources, defs).run_requests
        assert AssetKey("toy") not in before.asset_selection  # its fingerprint is current (the "{}" files' are not)
        result_path(storage, key, "toy").write_text(json.dumps({**stored, "inputs_fingerprint": "older code"}))
        (after,) = schedule_tick(instance, resources, defs).run_requests
        assert AssetKey("toy") in after.asset_selection

        assert defs.resolve_job_def("report_job").execute_in_process(instance=instance).success
    report = storage.path("report", "report.md").read_text()
    assert "## Toy\n\n| model | toy value |\n|---|---|\n| Baseline | 3 |\n" in report
    assert report.index("## Toy") < report.index("## Table 2")  # the registry's order, then the closing table
