"""The GPU check (`bench/gpu_check.sh OUT.json [--smoke]`): what a CUDA machine with only
PyTorch, transformers, pyarrow, sentencepiece and safetensors installed (no network, no
Dagster, spaCy or polars) can tell about the trainer in a few minutes.

- `step`: the paper-334m preset's full optimizer step (batch 128 x 1024 as 32 accumulated
  micro-batches of 4 x 1024, vocabulary 32,001, bf16 autocast) for the baseline and LaCy,
  interleaved over rounds: seconds per step, tokens/s, MFU (PaLM's FLOP count, dense bf16
  peak) and the paired median LaCy / baseline step time.
- `ddp`: `torchrun --nproc_per_node 2 -m trainer` (NCCL) against one process accumulating
  the same micro-batches: the largest weight difference after a few steps; skipped, and
  said so, with fewer than two GPUs.
- `resume`: a run stopped at a checkpoint and resumed against one that ran straight: are the
  final weights bit-identical (and, for scale, how far two straight runs differ).

`--smoke` shrinks every part (the smoke preset, a tiny model, CPU, gloo for the DDP part)
so that the script itself is tested on a machine without a GPU. The JSON file is rewritten
after every part, so a run cut short keeps what it measured; a part that fails records its
error and the script exits non-zero at the end.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from ratios import paired_ratios
from safetensors.torch import load_file
from train_step import OurTrainer, flops_per_token, measure, peak_bf16_flops

from trainer.presets import RunSettings, get_preset
from trainer.toy_data import synthetic_docs, synthetic_tokenizer, write_dataset

ROOT = Path(__file__).resolve().parent.parent
PAPER_VOCAB = 32_001  # 32,000 pieces + <CALL>


def step_times(settings: RunSettings, vocab: int, rounds: int, steps: int, device: torch.device) -> dict:
    """Baseline and LaCy full steps, interleaved (one model, optimizer and loader)."""
    ours = OurTrainer(settings, vocab, device)
    times = measure({m: functools.partial(ours.step, m) for m in ("baseline", "lacy")}, rounds, steps)
    tokens, flops, peak = ours.loader.tokens_per_step, flops_per_token(ours.model), peak_bf16_flops(device)
    out = {"model_size": settings.model_size, "num_params": ours.model.num_params(), "vocab_size": vocab,
           "batch": [settings.batch_size, settings.context], "micro_batch": [settings.micro_batch_size, settings.context],
           "rounds": rounds, "steps_per_round": steps, "peak_flops": peak}
    for method, ts in times.items():
        s = statistics.median(ts)
        out[method] = {"step_s": s, "step_s_per_round": ts, "tokens_per_s": tokens / s, "tflops": flops * tokens / s / 1e12,
                       "mfu": flops * tokens / s / peak if peak else None}
    out["lacy_vs_baseline_step"] = statistics.median(paired_ratios(times, "lacy", "baseline"))
    if device.type == "cuda":
        out["max_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def train_cli(data: Path, out: Path, max_steps: int, nproc: int = 1) -> None:
    """The trainer as a user runs it (lacy on the smoke preset), one process or torchrun."""
    launcher = [sys.executable, "-m", "trainer"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "trainer"]
    args = ["--preset", "smoke", "--method", "lacy", "--data", str(data), "--out", str(out), "--max-steps", str(max_steps),
            "--save-every", str(max(1, max_steps // 2))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(launcher + args)} failed:\n{done.stderr[-3000:]}")


def weight_difference(a: Path, b: Path) -> dict:
    """The largest absolute difference between two checkpoints' weights, and whether they are equal bit for bit."""
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys(), f"{a} and {b} hold different tensors"
    diff = max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)
    return {"max_abs_diff": diff, "bit_identical": all(torch.equal(wa[k], wb[k]) for k in wa)}


def final_checkpoint(run: Path, steps: int) -> Path:
    return run / f"step-{steps:08d}"


def ddp_check(data: Path, work: Path, steps: int, gpus: int, smoke: bool) -> dict:
    if not smoke and gpus < 2:
        return {"skipped": f"{gpus} GPU(s) on this machine: the 2-process NCCL check needs two"}
    train_cli(data, work / "one", steps)  # 2 micro-batches accumulated
    train_cli(data, work / "ddp", steps, nproc=2)  # 1 micro-batch per process
    diff = weight_difference(final_checkpoint(work / "one", steps), final_checkpoint(work / "ddp", steps))
    tolerance = 1e-4  # summation order of the gradient average differs; nothing else may
    return {"backend": "gloo" if smoke else "nccl", "steps": steps, **diff, "tolerance": tolerance, "equal": diff["max_abs_diff"] <= tolerance}


def resume_check(data: Path, work: Path, steps: int) -> dict:
    train_cli(data, work / "straight", steps)
    train_cli(data, work / "again", steps)
    train_cli(data, work / "resumed", steps // 2)  # stops at its checkpoint ...
    train_cli(data, work / "resumed", steps)  # ... and resumes from it
    straight = final_checkpoint(work / "straight", steps)
    return {"steps": steps, "resumed_from": steps // 2, **weight_difference(straight, final_checkpoint(work / "resumed", steps)),
            "straight_runs": weight_difference(straight, final_checkpoint(work / "again", steps))}


def run_part(results: dict, name: str, out: Path, part: Callable[[], dict]) -> None:
    t0 = time.perf_counter()
    try:
        results[name] = part()
    except Exception:  # a failed part is reported, the others still run
        results[name] = {"error": traceback.format_exc(limit=5)}
    results[name]["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"[{name}] {json.dumps(results[name])}", flush=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench/gpu_check.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="the JSON file to write")
    p.add_argument("--smoke", action="store_true", help="shrink everything and run on CPU (a test of this script)")
    a = p.parse_args(argv)
    gpus = torch.cuda.device_count()
    device = torch.device("cuda" if gpus and not a.smoke else "cpu")
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True  # as the trainer sets it
    results: dict = {"smoke": a.smoke, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
                     "gpus": gpus, "torch": torch.__version__, "cuda": torch.version.cuda}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    if a.smoke:
        settings, vocab, rounds, steps = get_preset("smoke").run("lacy"), 512, 2, 1
    else:
        settings, vocab, rounds, steps = get_preset("paper-334m").run("lacy"), PAPER_VOCAB, 3, 2
    run_part(results, "step", a.out, lambda: step_times(settings, vocab, rounds, steps, device))
    with tempfile.TemporaryDirectory(prefix="lacy-gpu-check-") as tmp:
        work = Path(tmp)
        data = work / "token_shards"
        tokenizer = synthetic_tokenizer(work / "tokenizer")
        write_dataset(data, tokenizer, synthetic_docs(tokenizer, n=48))
        train_steps = 2 if a.smoke else 8
        run_part(results, "ddp", a.out, lambda: ddp_check(data, work / "ddp", train_steps, gpus, a.smoke))
        run_part(results, "resume", a.out, lambda: resume_check(data, work / "resume", train_steps))
    failed = [name for name in ("step", "ddp", "resume") if "error" in results[name]]
    print(f"wrote {a.out}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
