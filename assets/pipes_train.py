"""The process Dagster launches for a training run: `torchrun ... -m assets.pipes_train
<trainer flags>`. Rank 0 reports logs, checkpoints and the final metrics back through
Dagster Pipes; the other ranks train silently. The trainer itself knows nothing of Dagster."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist
from dagster_pipes import PipesContext, open_dagster_pipes

from trainer.__main__ import parse_args
from trainer.train import train

REPORTED = ("loss", "call_loss", "non_call_loss", "call_fraction", "ignore_fraction", "call_top_fraction", "p_call_at_call",
            "p_call_at_non_call", "call_auc", "tokens_per_s", "data_share")


@contextmanager
def rank_zero_pipes() -> Iterator[PipesContext | None]:
    """Dagster Pipes on rank 0 of a process group a Pipes client launched; None on the other
    ranks, or outside Dagster. The process group (if any) is destroyed on the way out."""
    try:
        if int(os.environ.get("RANK", "0")) == 0 and "DAGSTER_PIPES_CONTEXT" in os.environ:
            with open_dagster_pipes() as pipes:
                yield pipes
        else:
            yield None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


class PipesReporter:
    """Keeps the last metrics (the trainer's own log lines already reach Dagster) and
    announces checkpoints."""

    def __init__(self, pipes: PipesContext):
        self.pipes = pipes
        self.last: dict = {}

    def log(self, step: int, metrics: dict) -> None:
        self.last = metrics

    def checkpoint(self, path: Path, info: dict) -> None:
        self.pipes.log.info(f"checkpoint {path} (step {info['step']}, {info['tokens_seen']} tokens)")


def main() -> None:
    config = parse_args()
    with rank_zero_pipes() as pipes:
        if pipes is None:
            train(config, log=lambda _msg: None)
            return
        reporter = PipesReporter(pipes)
        final = train(config, reporter, log=pipes.log.info)
        pipes.report_asset_materialization(
            metadata={
                "checkpoint": {"raw_value": str(final), "type": "path"},
                **{k: {"raw_value": float(v), "type": "float"} for k in REPORTED if (v := reporter.last.get(k)) is not None},
                "steps": {"raw_value": int(reporter.last.get("step", 0)), "type": "int"},
                "tokens_seen": {"raw_value": int(reporter.last.get("tokens", 0)), "type": "int"},
            }
        )


if __name__ == "__main__":
    main()
