"""The train loop: every method trains, resume is bit-identical, DDP equals accumulation."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trainer.__main__ import main as trainer_main
from trainer.__main__ import parse_args
from trainer.masks import METHODS
from trainer.score import main as score_main
from trainer.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", [*METHODS, "reference"])
def test_every_method_trains(tmp_path, dataset, judge_dir, ref_dir, method):
    class Recorder:
        logged, saved = [], []

        def log(self, step, m):
            self.logged.append(step)

        def checkpoint(self, path, info):
            self.saved.append((path.name, info["step"]))

    rec = Recorder()
    cfg = TrainConfig(method=method, data=(str(dataset),), out=str(tmp_path), preset="smoke", max_steps=2,
                      judge=(str(judge_dir),), ref_losses=(str(ref_dir),))
    final = train(cfg, reporter=rec, log=lambda _: None)
    assert final.name == "step-00000002" and rec.logged == [1, 2] and rec.saved == [("step-00000002", 2)]
    rows = metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] > 0 for r in rows)
    tokens = 2 * 2 * 32  # 2 micro-batches of 2 x 32 per step
    r = rows[-1]
    assert r["tokens"] == 2 * tokens and 0 <= r["data_share"] < 1 and r["tokens_per_s"] > 0
    if method in ("baseline", "reference"):
        assert r["call_fraction"] == 0 and r["call_loss"] is None and r["call_auc"] is None
        assert r["non_call_loss_full"] == pytest.approx(r["loss"], rel=1e-6)
    elif method in ("lacy", "rho1", "spacy", "spacy_refloss", "lacy_ignorefacts", "lacy_ignore"):
        assert r["call_fraction"] == 10 / 64  # round(0.15 * 64) per micro-batch (~40% facts: enough)
        assert r["call_loss"] > 0 and r["call_target_loss"] > 0 and 0 <= r["call_auc"] <= 1
    elif method == "llm_judge":
        assert 0 < r["call_fraction"] <= 10 / 64  # its labels (~15% of tokens), at most round(0.15 * 64) per micro-batch
    if method in ("lacy_ignorefacts", "lacy_ignore"):
        assert r["ignore_fraction"] >= 10 / 64
    else:
        assert r["ignore_fraction"] == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launchers(launch: str) -> list[list[str]]:
    """The command of each machine: one process, one machine with two processes, or two
    single-process "nodes" meeting at a c10d rendezvous on localhost (as on a cluster)."""
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    if launch == "one process":
        return [[sys.executable, "-m", "trainer"]]
    if launch == "two processes":
        return [[*torchrun, "--standalone", "--nproc_per_node=2", "-m", "trainer"]]
    if launch == "two nodes":
        node = [*torchrun, "--nnodes=2", "--nproc_per_node=1", "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{free_port()}", "--rdzv-id=lacy-test", "-m", "trainer"]
        return [node, node]
    raise ValueError(launch)


def run_cli(*args: str, launch: str = "one process") -> subprocess.CompletedProcess:
    """Start every machine's command at once and wait for all; returns the first's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    machines = [subprocess.Popen([*command, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for command in launchers(launch)]
    done = []
    for m in machines:
        stdout, stderr = m.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(m.args, m.returncode, stdout, stderr))
    for d in done:
        assert d.returncode == 0, d.stderr[-3000:]
    return done[0]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


def test_resume_after_a_kill_is_bit_identical(tmp_path, dataset):
    common = ["--preset", "smoke", "--method", "spacy", "--data", str(dataset), "--save-every", "3"]
    run_cli(*common, "--out", str(tmp_path / "straight"), "--max-steps", "6")
    run_cli(*common, "--out", str(tmp_path / "killed"), "--max-steps", "3")
    # what a kill during step 5's checkpoint leaves: a partial folder and metrics past step 3
    partial = tmp_path / "killed" / ".tmp-999-step-00000005"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"partial")
    with open(tmp_path / "killed" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "loss": 0.0}) + "\n")
    done = run_cli(*common, "--out", str(tmp_path / "killed"), "--max-steps", "6")
    assert "resumed from" in done.stdout
    a, b = weights(tmp_path / "straight" / "step-00000006"), weights(tmp_path / "killed" / "step-00000006")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not partial.exists()
    straight, resumed = metrics(tmp_path / "straight"), metrics(tmp_path / "killed")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in straight] == [r["loss"] for r in resumed]


def test_a_different_run_in_the_same_out_is_refused(tmp_path, dataset):
    train(TrainConfig(method="lacy", data=(str(dataset),), out=str(tmp_path), preset="smoke", max_steps=1), log=lambda _: None)
    with pytest.raises(ValueError, match="holds a different run"):
        train(TrainConfig(method="spacy", data=(str(dataset),), out=str(tmp_path), preset="smoke", max_steps=2), log=lambda _: None)


@pytest.mark.parametrize("launch", [pytest.param("two processes", marks=pytest.mark.slow), "two nodes"])
def test_ddp_equals_one_process_with_accumulation(tmp_path, dataset, launch):
    common = ["--preset", "smoke", "--method", "lacy", "--data", str(dataset), "--max-steps", "4"]
    run_cli(*common, "--out", str(tmp_path / "one"))  # 2 micro-batches accumulated
    run_cli(*common, "--out", str(tmp_path / "ddp"), launch=launch)  # 1 micro-batch per process
    a, b = weights(tmp_path / "one" / "step-00000004"), weights(tmp_path / "ddp" / "step-00000004")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    one, ddp = metrics(tmp_path / "one"), metrics(tmp_path / "ddp")
    assert len(one) == len(ddp) == 4
    for x, y in zip(one, ddp):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5) and x["call_fraction"] == y["call_fraction"]
    assert json.loads((tmp_path / "ddp" / "step-00000004" / "lacy.json").read_text())["world_size"] == 2


def test_reference_trains_on_extra_unlabeled_data_and_lacy_refuses_it(tmp_path, dataset, unlabeled_dataset):
    data = (str(dataset), str(unlabeled_dataset))
    final = train(TrainConfig(method="reference", data=data, out=str(tmp_path / "ref"), preset="smoke", max_steps=1), log=lambda _: None)
    assert len(json.loads((final / "lacy.json").read_text())["data"]) == 2
    from trainer.data import DataError

    with pytest.raises(DataError, match="no fact labels"):
        train(TrainConfig(method="lacy", data=data, out=str(tmp_path / "lacy"), preset="smoke", max_steps=1), log=lambda _: None)


def test_call_objective_is_part_of_a_calling_run_only(tmp_path, dataset):
    def run(method, objective, steps, out):
        cfg = TrainConfig(method=method, data=(str(dataset),), out=str(tmp_path / out), preset="smoke", max_steps=steps,
                          call_objective=objective)
        return json.loads((train(cfg, log=lambda _: None) / "lacy.json").read_text())

    assert run("lacy", "renormalized", 1, "lacy")["call_objective"] == "renormalized"
    with pytest.raises(ValueError, match="holds a different run"):
        run("lacy", "full", 2, "lacy")
    # the baseline's objective is A.1 whatever the flag: either flag continues the same run
    assert run("baseline", "renormalized", 1, "baseline")["call_objective"] is None
    assert run("baseline", "full", 2, "baseline")["step"] == 2


def test_cli_call_objective_and_probe():
    common = ["--method", "lacy", "--data", "d", "--out", "o"]
    assert parse_args(common).call_objective == "full" and parse_args(common).probe is None
    assert parse_args([*common, "--probe", "p.parquet"]).probe == "p.parquet"
    assert parse_args([*common, "--call-objective", "renormalized"]).call_objective == "renormalized"
    with pytest.raises(SystemExit):
        parse_args([*common, "--call-objective", "softmax"])


def test_the_command_lines_give_bad_input_one_line_and_status_1_and_train_with_cache_dir(tmp_path, dataset, capsys):
    common = ["--preset", "smoke", "--method", "lacy", "--out", str(tmp_path / "run"), "--max-steps", "1"]
    assert trainer_main([*common, "--data", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err == f"python -m trainer: {tmp_path}/none/manifest.json: missing (materialize the asset that writes it first)\n"
    assert score_main(["--checkpoint", str(tmp_path / "none"), "--data", str(dataset), "--out", str(tmp_path / "scores")]) == 1
    assert capsys.readouterr().err.startswith(f"python -m trainer.score: {tmp_path}/none/")
    assert trainer_main([*common, "--data", str(dataset), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert len([p for p in (tmp_path / "cache").iterdir() if p.is_dir()]) == 1


def test_fused_adamw_is_the_default_is_recorded_and_trains_as_the_per_tensor_kernel_up_to_rounding(tmp_path, dataset):
    common = ["--method", "lacy", "--data", str(dataset), "--out", str(tmp_path)]
    assert parse_args(common).fused_adamw and not parse_args([*common, "--no-fused-adamw"]).fused_adamw
    weights_of = {}
    for fused in (False, True):
        cfg = TrainConfig(method="lacy", data=(str(dataset),), out=str(tmp_path / str(fused)), preset="smoke", max_steps=2,
                          fused_adamw=fused)
        final = train(cfg, log=lambda _: None)
        assert json.loads((final / "lacy.json").read_text())["fused_adamw"] is fused
        weights_of[fused] = weights(final)
    per_tensor, fused = weights_of[False], weights_of[True]
    assert any(not torch.equal(per_tensor[k], fused[k]) for k in per_tensor)
    assert all(torch.allclose(per_tensor[k], fused[k], rtol=0, atol=1e-5) for k in per_tensor)
    resumed_with_the_other_kernel = TrainConfig(method="lacy", data=(str(dataset),), out=str(tmp_path / "False"),
                                                preset="smoke", max_steps=3)
    with pytest.raises(ValueError, match="holds a different run"):
        train(resumed_with_the_other_kernel, log=lambda _: None)
