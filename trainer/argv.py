"""The trainer's command lines built from its own config: `train_argv` is the inverse of
`trainer.__main__.parse_args` (`parse_args(train_argv(c)) == c`), and `torchrun_command`
launches a module under `torchrun --standalone` on this machine."""

from __future__ import annotations

import os
import sys

from trainer.train import TrainConfig


def train_argv(config: TrainConfig) -> list[str]:
    """The flags of `python -m trainer` for `config`: every field, repeated flags for the
    data, judge and reference-loss folders, optional ones only when set (None or False
    leave them out, `fused_adamw=False` is `--no-fused-adamw`)."""
    argv = ["--method", config.method, "--preset", config.preset, "--out", config.out, "--seed", str(config.seed),
            "--call-objective", config.call_objective]
    for flag, folders in (("--data", config.data), ("--judge", config.judge), ("--ref-losses", config.ref_losses)):
        argv += [f for folder in folders for f in (flag, folder)]
    for flag, value in (("--max-steps", config.max_steps), ("--save-every", config.save_every), ("--log-every", config.log_every),
                        ("--root", config.root), ("--wandb-project", config.wandb_project), ("--cache-dir", config.cache_dir),
                        ("--probe", config.probe)):
        argv += [flag, str(value)] if value is not None else []
    argv += ["--tensorboard"] if config.tensorboard else []
    argv += [] if config.fused_adamw else ["--no-fused-adamw"]
    return argv


def torchrun_command(nproc_per_node: int, module: str, argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment of `torchrun --standalone` running `python -m module argv`
    in `nproc_per_node` processes, which share this machine's cores (OMP_NUM_THREADS)."""
    threads = max(1, (os.cpu_count() or 1) // nproc_per_node)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
               "-m", module, *argv]
    return command, {"OMP_NUM_THREADS": str(threads)}
