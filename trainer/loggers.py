"""Optional metric writers beside `metrics.jsonl`: TensorBoard (`--tensorboard`, the
`tensorboard` extra) and Weights & Biases (`--wandb-project`, when `wandb` is installed).
Each is a `trainer.train.Reporter` that runs on rank 0 only; `metrics.jsonl` stays the
record the assets and the report read.

A resumed run continues the same TensorBoard directory and W&B run: TensorBoard drops the
events logged after the checkpoint it resumes from (`purge_step`), as `metrics.jsonl` does,
and the W&B run id is derived from the run directory and fingerprint.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

TENSORBOARD_DIR = "tensorboard"  # <run dir>/tensorboard/: `tensorboard --logdir <run dir>`


def _require(module: str, extra: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"{module} is not installed: pip install '{extra}'") from e


def _scalars(metrics: dict) -> dict[str, float]:
    """The numeric metrics of a logging step, without the step itself and the nulls."""
    return {k: float(v) for k, v in metrics.items() if k != "step" and isinstance(v, int | float)}


class TensorBoardWriter:
    """One scalar per metric, under `<run dir>/tensorboard/`, tagged `train/<metric>`."""

    def __init__(self, run_dir: Path, start_step: int):
        writer = _require("torch.utils.tensorboard", "lacy[tensorboard]").SummaryWriter
        # on resume, hide what a killed run logged after `start_step` (logged steps count steps done)
        self.writer = writer(log_dir=str(run_dir / TENSORBOARD_DIR), purge_step=start_step + 1 if start_step else None)

    def log(self, step: int, metrics: dict) -> None:
        for name, value in _scalars(metrics).items():
            self.writer.add_scalar(f"train/{name}", value, step)
        self.writer.flush()

    def checkpoint(self, path: Path, info: dict) -> None:
        self.writer.add_text("checkpoints", str(path), info["step"])

    def close(self) -> None:
        self.writer.close()


class WandbWriter:
    """A W&B run named after the run directory; the run's `lacy.json` fields as its config."""

    def __init__(self, project: str, run_dir: Path, info: dict):
        wandb = _require("wandb", "wandb")
        run_id = f"{run_dir.name}-{info['run_fingerprint'][:8]}"
        self.run = wandb.init(project=project, id=run_id, name=f"{info['method']}/{run_dir.name}", resume="allow",
                              dir=str(run_dir), config={k: v for k, v in info.items() if k not in ("data", "model")})

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(_scalars(metrics), step=step)

    def checkpoint(self, path: Path, info: dict) -> None:
        self.run.summary["checkpoint"] = str(path)

    def close(self) -> None:
        self.run.finish()
