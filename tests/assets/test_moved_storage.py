"""A storage root moved after training (a deployment that mounts it elsewhere): the latest
run, the sensor's checkpoint registration, the report's rows and the recorded provenance
still point into it, and the run resumes there."""

import json
import shutil
from pathlib import Path

from dagster import PipesSubprocessClient, instance_for_test, materialize

from assets.evaluation import ACCEPTABILITY_JUDGE, EVALUATIONS
from assets.models import LATEST, latest_run
from assets.partitions import checkpoint_partitions
from assets.register import register
from assets.report import collect
from assets.resources import JudgeResource, LacyStorage
from assets.training import method_model, reference_losses, reference_model
from pipelines.files import read_json
from tests.assets.ticks import sensor_tick
from trainer.checkpoint import latest_checkpoint
from trainer.train import TrainConfig, train

STEPS = {"preset": "smoke", "max_steps": 2, "save_every": 1}


def test_a_moved_storage_root_still_finds_its_runs_and_checkpoints(data_assets, tmp_path):
    # one instance for every run, the sensor and register (they share its dynamic partitions)
    with instance_for_test() as instance:
        moved_storage_round_trip(data_assets, tmp_path, instance)


def moved_storage_round_trip(data_assets, tmp_path, instance):
    shared, *_ = data_assets
    before = tmp_path / "mount-a"
    shutil.copytree(shared.path(), before, ignore=shutil.ignore_patterns("models", "reference_losses", "evaluation"))
    storage = LacyStorage(root=str(before))
    resources = {"storage": storage, "pipes_subprocess_client": PipesSubprocessClient()}
    for assets, config in (([reference_model], {"reference_model": {"config": STEPS}}), ([reference_losses], {}),
                           ([method_model("rho1")], {"rho1_model": {"config": STEPS}})):
        assert materialize(assets, resources=resources, run_config={"ops": config}, instance=instance).success
    run = latest_run(storage, "rho1")

    after = tmp_path / "mount-b"
    before.rename(after)
    moved = LacyStorage(root=str(after))

    assert read_json(after / "models" / "rho1" / LATEST) == {k: str(Path(v).relative_to(before)) for k, v in run.items()}
    found = latest_run(moved, "rho1")
    assert found == {k: str(after / Path(v).relative_to(before)) for k, v in run.items()}
    checkpoint = Path(found["checkpoint"])
    assert latest_checkpoint(Path(found["run_dir"])).path == checkpoint and checkpoint.name == "step-00000002"

    key = str(checkpoint.relative_to(after / "models"))
    assert key in register(instance, moved)
    assert key in instance.get_dynamic_partitions(checkpoint_partitions.name)
    sensed = sensor_tick(instance, {"storage": moved, ACCEPTABILITY_JUDGE: JudgeResource()})
    assert key in {r.partition_key for r in sensed.run_requests}
    assert collect(moved, [e.name for e in EVALUATIONS])["Rho-1"]["partition"] == key

    # provenance recorded relative to the root resolves under the new mount
    scored = read_json(after / "reference_losses" / "manifest.json")["model"]["checkpoint"]
    assert moved.resolve(scored) == Path(latest_run(moved, "reference")["checkpoint"])
    (data,) = json.loads((checkpoint / "lacy.json").read_text())["data"]
    assert (data["path"], data["ref_losses"]["path"]) == ("token_shards", "reference_losses")

    # the run resumes under the new mount (its data fingerprint does not depend on where data lies)
    resumed = train(TrainConfig(method="rho1", data=(str(moved.resolve(data["path"])),), out=found["run_dir"], preset="smoke",
                                ref_losses=(str(moved.resolve(data["ref_losses"]["path"])),), max_steps=3, root=str(after)),
                    log=lambda _msg: None)
    assert resumed == checkpoint.parent / "step-00000003"
