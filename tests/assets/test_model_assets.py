"""Training through Dagster Pipes + torchrun, then the sensor, the evaluation partitions,
the comparison report and the re-evaluation schedule, on a few real articles and a few
training steps. The Pipes client is a subclass of Dagster's `PipesSubprocessClient` that
records its calls: the assets run through the resource's own `run`."""

import json
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from dagster import AssetKey, PipesSubprocessClient, instance_for_test, materialize
from transformers import AutoModelForCausalLM

from assets.automation import pending_evaluations, waiting_on
from assets.evaluation import ACCEPTABILITY_JUDGE, EVALUATIONS, NO_JUDGE, knowledge_source
from assets.models import latest_run
from assets.report import report_asset
from assets.resources import JudgeResource, LacyStorage
from assets.results import result_path
from assets.training import method_model, reference_losses, reference_model
from tests.assets.ticks import schedule_tick, sensor_tick
from trainer.train import METRICS_FILE

STEPS = {"max_steps": 2, "save_every": 1}
EVALUATION_KEYS = [e.key for e in EVALUATIONS]


class RecordingClient(PipesSubprocessClient):
    """Dagster's subprocess client, recording each call (as a Kubernetes client bound to the
    same resource key would be called)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def run(self, *, command, context, env=None, **kwargs):
        self.calls.append({"asset": context.asset_key.to_user_string(), "command": command, "env": env})
        return super().run(command=command, context=context, env=env, **kwargs)


def launched(call) -> tuple[str, str, str]:
    """(asset, torchrun's processes flag, module) of a recorded call."""
    command = call["command"]
    return call["asset"], command[command.index("--standalone") + 1], command[command.index("-m", 3) + 1]


@pytest.fixture(scope="module")
def trained(data_assets):
    storage, *_ = data_assets
    client = RecordingClient()
    resources = {"storage": storage, "pipes_subprocess_client": client}
    results = {"pipes_calls": client.calls}
    for assets, config in (
        ([reference_model], {"reference_model": {"config": STEPS}}),
        ([reference_losses], {"reference_losses": {"config": {"nproc_per_node": 2}}}),  # torchrun ranks split the shards
        ([method_model("rho1"), method_model("lacy"), method_model("baseline")],
         {"rho1_model": {"config": STEPS}, "baseline_model": {"config": STEPS},
          "lacy_model": {"config": {**STEPS, "call_objective": "renormalized"}}}),
    ):
        result = materialize(assets, resources=resources, run_config={"ops": config})
        assert result.success
        for event in result.get_asset_materialization_events():
            results[event.asset_key.path[-1]] = {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_observation_events():
            observation = event.asset_observation_data.asset_observation
            observed = results.setdefault(f"{observation.asset_key.path[-1]}:observed", [])
            observed.append({k: v.value for k, v in observation.metadata.items()})
    return storage, results


def test_training_assets_report_through_pipes(trained):
    storage, results = trained
    lacy = results["lacy_model"]
    assert lacy["step"] == 2 and lacy["method"] == "lacy" and "data:image/png;base64" in lacy["loss_curves"]
    assert 0.1 < lacy["final_call_fraction"] < 0.2  # reported by the torchrun child through Pipes
    assert 0 <= lacy["call_top_fraction"] <= 1 and 0 <= lacy["final_call_auc"] <= 1
    assert lacy["call_objective"] == "renormalized" and results["baseline_model"]["call_objective"] == "none (A.1)"
    checkpoint = Path(latest_run(storage, "lacy")["checkpoint"])
    assert checkpoint.name == "step-00000002" and (checkpoint.parent / "step-00000001").is_dir()
    assert AutoModelForCausalLM.from_pretrained(checkpoint).config.vocab_size == 501
    assert results["reference_losses"]["tokens"] > 1000
    assert json.loads((Path(latest_run(storage, "rho1")["checkpoint"]) / "lacy.json").read_text())["method"] == "rho1"


def test_training_and_scoring_run_through_the_pipes_client_resource(trained):
    _, results = trained
    assert sorted(launched(call) for call in results["pipes_calls"]) == [
        ("baseline_model", "--nproc_per_node=1", "assets.pipes_train"),
        ("lacy_model", "--nproc_per_node=1", "assets.pipes_train"),
        ("reference_losses", "--nproc_per_node=2", "assets.pipes_score"),
        ("reference_model", "--nproc_per_node=1", "assets.pipes_train"),
        ("rho1_model", "--nproc_per_node=1", "assets.pipes_train"),
    ]
    assert all(call["env"]["OMP_NUM_THREADS"] for call in results["pipes_calls"])
    scored = results["reference_losses"]  # reported by rank 0 of the scoring through Pipes
    assert scored["tokens"] > 1000 and scored["mean_loss"] > 0 and scored["fingerprint"] and scored["seconds"] > 0


def test_training_metrics_are_observed_per_logging_step(trained):
    storage, results = trained
    for name in ("reference", "lacy"):
        logged = [json.loads(line) for line in (Path(latest_run(storage, name)["run_dir"]) / METRICS_FILE).read_text().splitlines()]
        observed = results[f"{name}_model:observed"]
        assert [o["step"] for o in observed] == [row["step"] for row in logged] == [2]  # the preset logs every 10 steps and the last
        assert [o["loss"] for o in observed] == pytest.approx([row["loss"] for row in logged])
    assert results["lacy_model:observed"][-1]["call_fraction"] == pytest.approx(logged[-1]["call_fraction"])
    assert "call_loss" not in results["reference_model:observed"][-1]  # null for a model that does not call


def test_a_killed_training_is_retried_and_resumes_from_its_newest_checkpoint(data_assets, tmp_path, monkeypatch):
    """The trainer is killed (SIGKILL) after its second checkpoint; the asset's retry policy
    reruns the step in the same run directory, and the trainer resumes there. Its metrics are
    observed while it runs: some observations are in the instance while the trainer lives."""
    source, *_ = data_assets
    storage = LacyStorage(root=str(tmp_path))
    shutil.copytree(source.path("token_shards"), storage.path("token_shards"))
    monkeypatch.setattr("assets.training.POLL_SECONDS", 0.2)
    client, killed, live, done = RecordingClient(), [], set(), threading.Event()

    def trainers():
        return [proc for proc in psutil.process_iter(["cmdline"])
                if "assets.pipes_train" in (cmd := proc.info["cmdline"] or []) and "torch.distributed.run" not in cmd]

    def watch(instance):
        while not done.is_set():
            records = instance.fetch_observations(AssetKey("baseline_model"), limit=100).records
            steps = {r.event_log_entry.asset_observation.metadata["step"].value for r in records}
            running = trainers()
            if running:  # read before the trainer was seen alive: observed while it runs
                live.update(steps)
            for proc in running:
                out = Path(proc.info["cmdline"][proc.info["cmdline"].index("--out") + 1])
                if not killed and (out / "step-00000002" / "lacy.json").exists():
                    proc.kill()
                    killed.append(out)
            time.sleep(0.05)

    with instance_for_test() as instance:
        watcher = threading.Thread(target=watch, args=(instance,))
        watcher.start()
        try:
            result = materialize([method_model("baseline")], instance=instance,
                                 resources={"storage": storage, "pipes_subprocess_client": client},
                                 run_config={"ops": {"baseline_model": {"config": {"max_steps": 40, "save_every": 1}}}})
        finally:
            done.set()
            watcher.join()
        logs = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert killed and result.success
    (run_dir,) = {killed[0]}
    assert Path(latest_run(storage, "baseline")["checkpoint"]) == run_dir / "step-00000040"
    steps = [json.loads(line)["step"] for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    assert steps == [10, 20, 30, 40]  # each logging step once: the resume dropped what the killed run logged after its checkpoint
    assert any(m.startswith(f"resumed from {run_dir}/step-0000000") for m in logs)  # the trainer's own line, through Pipes
    assert any(e.event_type_value == "STEP_RESTARTED" for e in result.all_events)
    assert len(client.calls) == 2 and client.calls[0]["command"] == client.calls[1]["command"]  # the retry: the same run dir
    observed = [e.asset_observation_data.asset_observation.metadata["step"].value for e in result.get_asset_observation_events()]
    assert observed == [10, 20, 30, 40] and live & {10, 20, 30}  # live: before the trainer ended


def test_first_use_waits_for_missing_inputs(tmp_path):
    """A fresh storage root: the cascade waits on a partner, FactScore also on the knowledge
    source, acceptability on the token shards and a judge; what needs only the checkpoint is
    requested."""
    storage = LacyStorage(root=str(tmp_path))
    resources = SimpleNamespace(storage=storage, **{ACCEPTABILITY_JUDGE: JudgeResource()})
    assert waiting_on(resources, EVALUATIONS) == {
        "validation_losses": ["token_shards"], "cascade_generations": ["reference_model (the cascade partner)"],
        "factscore": ["reference_model (the cascade partner)", "knowledge_source"], "fact_leakage": [], "nlu": [],
        "acceptability": ["token_shards", NO_JUDGE]}
    result_path(storage, "lacy/run-1/step-00000002", "nlu").parent.mkdir(parents=True)
    result_path(storage, "lacy/run-1/step-00000002", "nlu").write_text("{}")  # evaluated already
    (request,), lines = pending_evaluations(resources, ["lacy/run-1/step-00000002"], EVALUATIONS)
    assert [k.to_user_string() for k in request.asset_selection] == ["fact_leakage"]
    assert request.run_key == "evaluate:lacy/run-1/step-00000002:fact_leakage"
    assert lines == ["lacy/run-1/step-00000002: validation_losses waits on token_shards",
                     "lacy/run-1/step-00000002: cascade_generations waits on reference_model (the cascade partner)",
                     "lacy/run-1/step-00000002: factscore waits on reference_model (the cascade partner), knowledge_source",
                     f"lacy/run-1/step-00000002: acceptability waits on token_shards, {NO_JUDGE}"]


def test_sensor_schedule_evaluations_and_report(trained):
    with instance_for_test() as instance:
        sensor_schedule_evaluations_and_report(*trained, instance)


def sensor_schedule_evaluations_and_report(storage, _, instance):
    models = storage.path("models")
    resources = {"storage": storage, ACCEPTABILITY_JUDGE: JudgeResource()}  # no judge

    result = sensor_tick(instance, resources)
    (add,) = result.dynamic_partitions_requests
    assert len(add.partition_keys) == 8  # 4 runs x 2 checkpoints, all partitions
    requested = {r.partition_key for r in result.run_requests}  # the newest of each run is evaluated
    assert requested == {str(Path(latest_run(storage, m)["checkpoint"]).relative_to(models)) for m in ("reference", "rho1", "lacy", "baseline")}
    # no knowledge source yet: FactScore waits, no judge: acceptability waits, the other evaluations are requested
    ready = set(EVALUATION_KEYS) - {AssetKey("factscore"), AssetKey("acceptability")}
    assert all(set(r.asset_selection) == ready for r in result.run_requests)
    again = sensor_tick(instance, resources)
    assert not again.dynamic_partitions_requests  # the same requests under the same run keys: run once
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in result.run_requests]

    assert materialize([knowledge_source], resources=resources, instance=instance).success
    run_config = {"ops": {
        "validation_losses": {"config": {"max_tokens": 3000}},
        "cascade_generations": {"config": {"limit": 2, "max_new_tokens": 12, "split": "all"}},
        "fact_leakage": {"config": {"limit": 3}},
        "nlu": {"config": {"limit": 2}},
    }}
    lacy_key = str(Path(latest_run(storage, "lacy")["checkpoint"]).relative_to(models))
    evaluated = materialize(  # every evaluation, as evaluation_job: acceptability without a judge evaluates nothing
        [*(e.asset for e in EVALUATIONS), knowledge_source],
        selection=[k.to_user_string() for k in EVALUATION_KEYS],
        partition_key=lacy_key, resources=resources, instance=instance, run_config=run_config,
    )
    assert evaluated.success
    meta = {e.asset_key.path[-1]: e.materialization.metadata for e in evaluated.get_asset_materialization_events()}
    assert set(meta) == {k.to_user_string() for k in EVALUATION_KEYS} - {"acceptability"}
    assert meta["validation_losses"]["baseline_call_loss"].value > 0  # the matched baseline on lacy's mask
    assert 0 <= meta["factscore"]["fact_overlap_proxy"].value <= 1 and "factscore" not in meta["factscore"]
    assert 0 <= meta["fact_leakage"]["popqa_leakage"].value <= 1
    assert "| bigbench_qa_wikidata |" in meta["fact_leakage"]["answer_rule"].value  # per benchmark
    assert "questions_losing_aliases" in meta["fact_leakage"]["answer_rule"].value
    generations = json.loads(result_path(storage, lacy_key, "cascade_generations").read_text())
    budgeted = generations["modes"]["budgeted"]
    assert len(budgeted["generations"]) == 2 and budgeted["summary"]["calls"] > 0
    assert set(generations["modes"]) == {"budgeted", "native"}  # lacy trains calls: no no_call mode
    assert meta["cascade_generations"]["realized_call_rate_native"].value == pytest.approx(generations["modes"]["native"]["summary"]["call_rate"], abs=1e-4)

    # once the knowledge source exists, FactScore of the others is requested; lacy is done
    later = sensor_tick(instance, resources)
    assert lacy_key not in {r.partition_key for r in later.run_requests}
    assert {r.partition_key for r in later.run_requests} == requested - {lacy_key}
    assert all(AssetKey("factscore") in r.asset_selection for r in later.run_requests)

    report = materialize([report_asset(EVALUATIONS)], resources={"storage": storage}, instance=instance)
    assert report.success
    (event,) = report.get_asset_materialization_events()
    assert "data:image/png;base64" in event.materialization.metadata["figure_2_6_factscore_vs_leakage"].value
    assert (storage.path("report", "report.md")).read_text().startswith("# LaCy comparison report")

    up_to_date = schedule_tick(instance, resources)
    assert not up_to_date.run_requests and up_to_date.skip_message == "every evaluated checkpoint is up to date"
    stored = result_path(storage, lacy_key, "fact_leakage")
    stored.write_text(json.dumps({**json.loads(stored.read_text()), "inputs_fingerprint": "evaluated-by-older-code"}))
    (request,) = schedule_tick(instance, resources).run_requests
    assert request.partition_key == lacy_key
    assert [k.to_user_string() for k in request.asset_selection] == ["fact_leakage"]
    stored = result_path(storage, lacy_key, "cascade_generations")  # FactScore scores the generations: stale with them
    stored.write_text(json.dumps({**json.loads(stored.read_text()), "inputs_fingerprint": "evaluated-by-older-code"}))
    (request,) = schedule_tick(instance, resources).run_requests
    assert [k.to_user_string() for k in request.asset_selection] == ["cascade_generations", "fact_leakage", "factscore"]
