"""The optional metric writers: TensorBoard scalars equal metrics.jsonl, also across a
resume; the W&B writer's calls (W&B is not installed here: a recording stand-in module)."""

import json
import sys
import types
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from trainer.__main__ import parse_args
from trainer.loggers import TENSORBOARD_DIR
from trainer.train import TrainConfig, train


def scalars(run_dir: Path, tag: str) -> dict[int, float]:
    events = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars(tag)}
    assert len(logged) == len(events.Scalars(tag)), "a step logged twice"
    return logged


def test_tensorboard_scalars_equal_metrics_jsonl_across_a_resume(tmp_path, dataset):
    def run(steps):
        cfg = TrainConfig(method="lacy", data=(str(dataset),), out=str(tmp_path), preset="smoke", max_steps=steps,
                          save_every=2, log_every=1, tensorboard=True)
        train(cfg, log=lambda _: None)

    run(3)
    # a killed run logged step 3 after its last checkpoint (step 2): the resume replaces it
    (tmp_path / "step-00000003").rename(tmp_path / "killed-step-3")
    run(4)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for name in ("loss", "call_loss", "non_call_loss", "call_top_fraction", "lr"):
        logged = scalars(tmp_path, f"train/{name}")
        assert sorted(logged) == [1, 2, 3, 4]
        assert logged == pytest.approx({r["step"]: r[name] for r in rows}, rel=1e-6)


def test_wandb_writer_logs_every_step_to_one_resumable_run(tmp_path, dataset, monkeypatch):
    calls = {"init": [], "log": [], "finish": 0}

    class Run:
        summary: dict = {}

        def log(self, data, step):
            calls["log"].append((step, data))

        def finish(self):
            calls["finish"] += 1

    def init(**kwargs):
        calls["init"].append(kwargs)
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    cfg = TrainConfig(method="spacy", data=(str(dataset),), out=str(tmp_path), preset="smoke", max_steps=2,
                      log_every=1, wandb_project="lacy-test")
    final = train(cfg, log=lambda _: None)
    (init_kwargs,) = calls["init"]
    info = json.loads((final / "lacy.json").read_text())
    assert init_kwargs["project"] == "lacy-test" and init_kwargs["resume"] == "allow"
    assert init_kwargs["id"] == f"{tmp_path.name}-{info['run_fingerprint'][:8]}"
    assert init_kwargs["config"]["method"] == "spacy"
    assert [step for step, _ in calls["log"]] == [1, 2] and calls["finish"] == 1
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert calls["log"][-1][1]["loss"] == pytest.approx(rows[-1]["loss"])
    assert "step" not in calls["log"][-1][1] and all(v is not None for v in calls["log"][-1][1].values())
    assert Run.summary["checkpoint"] == str(final)


def test_missing_wandb_is_named(tmp_path, dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails
    cfg = TrainConfig(method="baseline", data=(str(dataset),), out=str(tmp_path), preset="smoke", max_steps=1,
                      wandb_project="p")
    with pytest.raises(ImportError, match="wandb is not installed"):
        train(cfg, log=lambda _: None)


def test_cli_writer_flags():
    common = ["--method", "lacy", "--data", "d", "--out", "o"]
    assert not parse_args(common).tensorboard and parse_args(common).wandb_project is None
    cfg = parse_args([*common, "--tensorboard", "--wandb-project", "x"])
    assert cfg.tensorboard and cfg.wandb_project == "x"
