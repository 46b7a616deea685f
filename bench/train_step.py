"""Step time of the trainer: LaCy's masks and objective against the baseline step, and our
trainer against a plain `transformers` GPT2LMHeadModel training loop, in one run.

    PYTHONPATH=. python bench/train_step.py [--quick]

Sizes: `embedded` (the embedded preset: tiny model, vocabulary 4,097, micro-batch 8 x 256),
and `334m-shaped` (the real 334m width and depth and the paper's 32,001 vocabulary, but a
micro-batch of 1 x 256 on CPU, where a full 4 x 1024 fp32 step would take minutes). Each
variant runs whole optimizer steps on random tokens with ~38% fact labels (the embedded
corpus' share) and random reference losses; variants are interleaved within each round, in an
order rotated from round to round, and
each ratio is taken within a round (the machine's load drifts between rounds) and reported as
its median over rounds with its quartiles, range and the number of rounds above 1.

- baseline / lacy / lacy_renormalized / rho1: `trainer.train.StepRunner` steps, including the
  packed loader (one model and optimizer, switching the method per step); `lacy` trains with the
  `full` call objective, `lacy_renormalized` with A.4 as printed; `baseline_per_tensor` is the
  baseline step with PyTorch's per-tensor AdamW kernel (its CPU default, the one `hf` uses)
  instead of the trainer's default, the fused one: the comparison at equal optimizer work.
- hf: GPT2LMHeadModel (the exported config, sdpa attention) with `labels=input_ids`,
  AdamW with the same settings, clipping 1.0: the plain loop a researcher would write.

On a GPU machine it also reports the 334M bf16 step (micro-batch 4 x 1024) and its MFU.
The last line: `lacy_vs_baseline_step=<worst over sizes> ours_vs_hf_tokens_per_s=<worst>`.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
import torch
from ratios import describe, paired_ratios, quartiles

from trainer.data import Documents, PackedLoader
from trainer.masks import get_method
from trainer.model import GPT, hf_config, model_config
from trainer.objective import FULL, RENORMALIZED
from trainer.presets import RunSettings
from trainer.train import Dist, StepRunner, build_optimizer

FACT_SHARE = 0.38


def synthetic_documents(vocab_size: int, tokens: int, seed: int = 0) -> Documents:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 900, size=tokens // 300 + 1)
    n = int(lengths.sum())
    return Documents(
        ids=rng.integers(3, vocab_size - 1, size=n, dtype=np.int32),
        token_class=rng.choice(3, size=n, p=[0.31, 1 - 0.31 - FACT_SHARE, FACT_SHARE]).astype(np.int8),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        judge_call=None,
        ref_loss=rng.random(n, dtype=np.float32) * 8,
        tokenizer={"eos_id": 2, "vocab_size": vocab_size, "call_token_id": vocab_size - 1},
    )


class OurTrainer:
    """One model, optimizer and loader; `step(method, objective)` runs one optimizer step of a
    method (the methods share them so that a 334M-shaped run holds one model, not four).
    `fused=False` steps with a second AdamW, the per-tensor kernel (PyTorch's CPU default)."""

    def __init__(self, settings: RunSettings, vocab: int, device: torch.device):
        torch.manual_seed(0)
        self.settings = settings
        self.model = GPT(model_config(settings.model_size, vocab, context=settings.context)).to(device)
        self.runner = StepRunner(self.model, settings, get_method("baseline"), FULL, vocab - 1, 0, Dist(device=device))
        self.optimizers = {True: self.runner.optimizer, False: build_optimizer(self.model, settings, fused=False)}
        g = settings.micro_batches_per_step()
        self.tokens_per_step = settings.batch_size * settings.context
        self.loader = PackedLoader(synthetic_documents(vocab, 20 * self.tokens_per_step), settings.context,
                                   settings.micro_batch_size, g, seed=0)
        self.device = device

    def step(self, method: str, objective: str = FULL, fused: bool = True) -> None:
        self.runner.method, self.runner.call_objective = get_method(method), objective
        self.runner.optimizer = self.optimizers[fused]
        step, batches = self.loader.next_step()
        sums, _ = self.runner.step(step, [mb.to(self.device) for mb in batches])
        sums[0].item()  # wait for the device


class HFStep:
    def __init__(self, size: str, vocab: int, b: int, T: int, device: torch.device):
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        cfg = model_config(size, vocab, context=T)
        self.model = GPT2LMHeadModel(GPT2Config(**hf_config(cfg, 1, 2), attn_implementation="sdpa")).to(device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.1, fused=device.type == "cuda")
        self.x = torch.randint(3, vocab - 1, (b, T), device=device)
        self.cuda = device.type == "cuda"

    def __call__(self) -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
            loss = self.model(input_ids=self.x, labels=self.x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        loss.item()


def measure(variants: dict, rounds: int, steps: int) -> dict[str, list[float]]:
    """Seconds per step of each variant in each round. Variants are interleaved within a
    round so that they share the machine's load, in an order rotated each round: here the
    position in a round alone moved a step's time by about 5% (one warm-up step each first)."""
    for fn in variants.values():
        fn()
    names = list(variants)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0 = time.perf_counter()
            for _ in range(steps):
                variants[name]()
            times[name].append((time.perf_counter() - t0) / steps)
    return times


def micro_batch_settings(size: str, b: int, T: int) -> RunSettings:
    """One micro-batch of b x T per step."""
    return RunSettings(size, T, batch_size=b, micro_batch_size=b, lr=1e-4, warmup_steps=1, steps=10**6)


def bench_size(label: str, size: str, vocab: int, b: int, T: int, rounds: int, steps: int, device: torch.device) -> tuple[float, float]:
    ours = OurTrainer(micro_batch_settings(size, b, T), vocab, device)
    variants = {m: functools.partial(ours.step, m) for m in ("baseline", "lacy", "rho1")}
    variants["lacy_renormalized"] = functools.partial(ours.step, "lacy", RENORMALIZED)
    variants["baseline_per_tensor"] = functools.partial(ours.step, "baseline", fused=False)
    variants["hf"] = HFStep(size, vocab, b, T, device)
    params = ours.model.num_params()
    times = measure(variants, rounds, steps)
    tokens = b * T
    print(f"[{label}] {size} model ({params / 1e6:.1f}M parameters), vocabulary {vocab}, micro-batch {b} x {T}, "
          f"{device.type}, {rounds} interleaved rounds x {steps} steps")
    for name, ts in times.items():
        q1, s, q3 = quartiles(ts)
        print(f"  {name:17s} {s * 1e3:9.1f} ms/step (median; quartiles {q1 * 1e3:.1f}-{q3 * 1e3:.1f})  {tokens / s:9.0f} tokens/s")
    print("  paired per-round ratios, median:")
    pairs = {"lacy/baseline step": ("lacy", "baseline"), "lacy_renormalized/baseline step": ("lacy_renormalized", "baseline"),
             "rho1/baseline step": ("rho1", "baseline"), "ours(baseline)/hf tokens/s": ("hf", "baseline"),
             "ours(lacy)/hf tokens/s": ("hf", "lacy"), "ours(baseline, per-tensor AdamW)/hf tokens/s": ("hf", "baseline_per_tensor")}
    ratios = {name: paired_ratios(times, a, b) for name, (a, b) in pairs.items()}
    for name, r in ratios.items():
        print(f"    {name:40s} {describe(r)}")
    median = {name: statistics.median(r) for name, r in ratios.items()}
    return max(median["lacy/baseline step"], median["lacy_renormalized/baseline step"]), median["ours(baseline)/hf tokens/s"]


def flops_per_token(model: GPT) -> float:
    """PaLM's count at the model's context: 6 N for the weights (position embeddings aside,
    the tied head included) + 12 L d T for attention."""
    cfg = model.cfg
    return 6 * (model.num_params() - cfg.context * cfg.d_model) + 12 * cfg.n_layers * cfg.d_model * cfg.context


def peak_bf16_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of the GPU, when known."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in {"H100": 989e12, "H200": 989e12, "A100": 312e12}.items() if k in name), None)


def gpu_mfu(device: torch.device) -> None:
    """334M in bf16 at the paper's micro-batch (4 x 1024): tokens/s and MFU."""
    b, T, vocab = 4, 1024, 32001
    ours = OurTrainer(micro_batch_settings("334m", b, T), vocab, device)
    s = statistics.median(measure({"lacy": functools.partial(ours.step, "lacy")}, rounds=3, steps=10)["lacy"])
    achieved = flops_per_token(ours.model) * b * T / s
    peak = peak_bf16_flops(device)
    mfu = f"{achieved / peak:.1%}" if peak else "n/a (unknown peak)"
    print(f"[gpu] {torch.cuda.get_device_name(device)}: 334m bf16 lacy step {s * 1e3:.1f} ms, {b * T / s:.0f} tokens/s, "
          f"{achieved / 1e12:.1f} TFLOP/s, MFU {mfu}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true", help="fewer rounds (a smoke check of the script)")
    p.add_argument("--skip-334m", action="store_true")
    p.add_argument("--rounds-334m", type=int, default=18, help="interleaved rounds at the 334M shape (~40 s each here)")
    a = p.parse_args()
    cpu = torch.device("cpu")
    torch.set_flush_denormal(True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    results = [bench_size("embedded", "tiny", 4097, 8, 256, 4 if a.quick else 25, 1, cpu)]
    if not a.skip_334m:
        results.append(bench_size("334m-shaped", "334m", 32001, 1, 256, 2 if a.quick else a.rounds_334m, 1, cpu))
    if torch.cuda.is_available():
        gpu_mfu(torch.device("cuda"))
    print(f"lacy_vs_baseline_step={max(r[0] for r in results):.3f} ours_vs_hf_tokens_per_s={min(r[1] for r in results):.3f}")


if __name__ == "__main__":
    main()
