"""`torchrun [--nproc_per_node N ...] -m trainer --preset P --method M --data DIR --out DIR ...`
(or `python -m trainer ...` for one process). Resumes from the newest complete checkpoint
in --out by itself."""

from __future__ import annotations

import argparse
import sys

import torch.distributed as dist

from pipelines.files import exit_status
from trainer.masks import METHODS
from trainer.objective import CALL_OBJECTIVES, FULL
from trainer.presets import PRESETS, REFERENCE
from trainer.train import TrainConfig, train


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    p = argparse.ArgumentParser(prog="python -m trainer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="embedded", choices=sorted(PRESETS))
    p.add_argument("--method", required=True, choices=[*METHODS, REFERENCE],
                   help=f"a method of Table 5, or {REFERENCE!r} (the longer baseline-objective run)")
    p.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="token dataset directory (shards + manifest.json + tokenizer.model); repeat for more")
    p.add_argument("--judge", action="append", default=[], metavar="DIR",
                   help="LLM-judge labels directory (llm_judge); matched to a --data directory by fingerprint")
    p.add_argument("--ref-losses", action="append", default=[], metavar="DIR",
                   help="reference losses directory (rho1, spacy_refloss), from `python -m trainer.score`")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory: checkpoints and metrics.jsonl")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (default: the preset's)")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every K steps (and at the end)")
    p.add_argument("--log-every", type=int, default=None, help="log metrics every K steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--call-objective", default=FULL, choices=CALL_OBJECTIVES,
                   help="full: cross-entropy over the whole vocabulary, call targets swapped to <CALL>; "
                   "renormalized: A.4 as printed (text term over p without <CALL>). Ignored by baseline and reference")
    p.add_argument("--root", default=None, metavar="DIR",
                   help="storage root: data paths in lacy.json are recorded relative to it (default: absolute)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard scalars under OUT/tensorboard/ (pip install 'lacy[tensorboard]')")
    p.add_argument("--wandb-project", default=None, metavar="NAME", help="also log to this W&B project (needs wandb)")
    p.add_argument("--fused-adamw", action=argparse.BooleanOptionalAction, default=True,
                   help="the fused AdamW kernel (default); --no-fused-adamw: the per-tensor one, not bit-identical")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="where the loader keeps the split as flat arrays (default: cache/ in the first --data folder; "
                   "needs write access: give one when that folder is read-only)")
    p.add_argument("--probe", default=None, metavar="FILE",
                   help="a probe file (Parquet: doc_id, kind per token; see trainer/probe.py): which kinds of tokens the "
                   "method's rule and the model's decoded mask call, in OUT/probe.jsonl at every logging step")
    a = p.parse_args(argv)
    return TrainConfig(method=a.method, data=tuple(a.data), out=a.out, preset=a.preset, judge=tuple(a.judge),
                       ref_losses=tuple(a.ref_losses), max_steps=a.max_steps, save_every=a.save_every,
                       log_every=a.log_every, seed=a.seed, call_objective=a.call_objective, root=a.root,
                       tensorboard=a.tensorboard, wandb_project=a.wandb_project, fused_adamw=a.fused_adamw,
                       cache_dir=a.cache_dir, probe=a.probe)


def run(cfg: TrainConfig) -> int:
    print(f"final checkpoint: {train(cfg)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        return exit_status("python -m trainer", lambda: run(cfg))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
