"""The trainer's command line from its config: `parse_args(train_argv(c)) == c` for a config
that sets every field and for the defaults; the torchrun command around it."""

import sys

from trainer.__main__ import parse_args
from trainer.argv import torchrun_command, train_argv
from trainer.train import TrainConfig

EVERY_FIELD = TrainConfig(
    method="rho1", data=("d1", "d2"), out="out", preset="smoke", judge=("j",), ref_losses=("r1", "r2"), max_steps=7,
    save_every=3, log_every=2, seed=5, call_objective="renormalized", root="root", tensorboard=True, wandb_project="w",
    fused_adamw=False, cache_dir="cache", probe="probe.parquet")


def test_round_trip():
    assert parse_args(train_argv(EVERY_FIELD)) == EVERY_FIELD
    defaults = TrainConfig(method="baseline", data=("d",), out="out")
    assert parse_args(train_argv(defaults)) == defaults
    assert train_argv(defaults) == ["--method", "baseline", "--preset", "embedded", "--out", "out", "--seed", "0",
                                    "--call-objective", "full", "--data", "d"]


def test_torchrun_command():
    command, env = torchrun_command(2, "assets.pipes_train", ["--x"])
    assert command == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                       "-m", "assets.pipes_train", "--x"]
    assert int(env["OMP_NUM_THREADS"]) >= 1
