"""The train loop: one loop for every method, one process or many (DDP under torchrun).

A step takes `micro_batches_per_step` micro-batches (the preset's batch / micro-batch),
split over the processes, each process accumulating gradients over its share. The loss of a
micro-batch is normalized over its own tokens (A.4's 1/N), and the step's gradient is the
mean over its micro-batches, however they are split. The step's learning rate follows
linear warmup then constant; gradients are clipped to norm 1.0 (`trainer.presets`).

Resume: `train` continues from the newest complete checkpoint in `out` (model, optimizer,
RNG states, data position), so a run killed at any moment restarts where its last
checkpoint left it, bit for bit on CPU (same thread count). Randomness in a step (the
`loss_based`, `spacy` and `llm_judge` masks) comes from a generator seeded by (seed, step,
micro-batch) (`trainer.masks.mask_generator`), never from global state, so it does not
depend on how the work is split or resumed.

Metrics (rank 0, every `log_every` steps): a line of `<out>/metrics.jsonl` and
`reporter.log(step, metrics)` for the caller's reporter and the optional TensorBoard and W&B
writers (`trainer.loggers`). Names: see `trainer.metrics`. With a probe file (`--probe`),
also a line of `<out>/probe.jsonl` (`trainer.probe`), which changes nothing in training.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.nn.parallel import DistributedDataParallel as DDP

from pipelines.files import fingerprint
from pipelines.tokenizer import Tokenizer
from trainer.checkpoint import INFO_FILE, WEIGHTS_FILE, Checkpoint, clean_partial, latest_checkpoint
from trainer.checkpoint_io import load_trainer_state, save_checkpoint
from trainer.data import Documents, MicroBatch, PackedLoader, load_documents
from trainer.loggers import TensorBoardWriter, WandbWriter
from trainer.masks import Method, get_method, mask_generator
from trainer.metrics import SUMS, interval_metrics, micro_batch_sums
from trainer.model import GPT, model_config
from trainer.objective import FULL, check_objective, lacy_loss_from_stats, logit_stats
from trainer.presets import RunSettings, get_preset
from trainer.probe import PROBE_FILE, load_probe

METRICS_FILE = "metrics.jsonl"  # one line per logging step: `trainer.metrics.METRICS`


class Reporter(Protocol):
    """Called on rank 0 only (the Dagster assets pass a Pipes reporter)."""

    def log(self, step: int, metrics: dict) -> None: ...

    def checkpoint(self, path: Path, info: dict) -> None: ...


class Reporters:
    """Several reporters as one; closes those it opened (the writers of `trainer.loggers`)."""

    def __init__(self, given: Reporter | None, opened: list):
        self.all, self.opened = [r for r in (given, *opened) if r is not None], opened

    def log(self, step: int, metrics: dict) -> None:
        for r in self.all:
            r.log(step, metrics)

    def checkpoint(self, path: Path, info: dict) -> None:
        for r in self.all:
            r.checkpoint(path, info)

    def close(self) -> None:
        for r in self.opened:
            r.close()


def open_writers(cfg: TrainConfig, out: Path, start: int, info: dict) -> list:
    """The optional TensorBoard and W&B writers the config asks for."""
    writers = [TensorBoardWriter(out, start)] if cfg.tensorboard else []
    return writers + ([WandbWriter(cfg.wandb_project, out, info)] if cfg.wandb_project else [])


@dataclass(frozen=True)
class TrainConfig:
    method: str
    data: tuple[str, ...]
    out: str
    preset: str = "embedded"
    judge: tuple[str, ...] = ()
    ref_losses: tuple[str, ...] = ()
    max_steps: int | None = None  # default: the preset's steps for the method
    save_every: int | None = None  # default: the preset's
    log_every: int | None = None
    seed: int = 0
    call_objective: str = FULL  # `trainer.objective.CALL_OBJECTIVES`; only methods that call use it
    root: str | None = None  # storage root: lacy.json records data paths relative to it
    tensorboard: bool = False  # also write TensorBoard scalars under <out>/tensorboard/
    wandb_project: str | None = None  # also log to this W&B project (needs `wandb`)
    fused_adamw: bool = True  # the fused AdamW kernel; False: the per-tensor one (PyTorch's CPU default), not bit-identical
    cache_dir: str | None = None  # the loader's flat arrays (`trainer.data`); default: cache/ in the first --data folder
    probe: str | None = None  # a probe file (`trainer.probe`): <out>/probe.jsonl at every logging step; no effect on training


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """env:// initialization from torchrun's variables (one or many nodes); plain
    `python -m trainer` runs as a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_flush_denormal(True)  # denormals slow CPU steps 3-10x (NOTES.md)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    rank = dist.get_rank() if world > 1 else 0
    return Dist(rank, world, local, device)


def learning_rate(settings: RunSettings, step: int) -> float:
    """Linear warmup over `warmup_steps`, then constant (A.4.1)."""
    return settings.lr * min(1.0, (step + 1) / max(1, settings.warmup_steps))


def build_optimizer(model: GPT, settings: RunSettings, fused: bool = True) -> torch.optim.AdamW:
    """AdamW with weight decay on the matrices only. The fused kernel is the default on every
    device: on CPU it makes the 334M-shaped step about 1.25x faster than PyTorch's default there,
    the per-tensor kernel (bench/train_step.py); `fused=False` keeps that one."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # biases, LayerNorm
    ]
    return torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas, eps=settings.eps,
                             fused=fused)


def micro_batch_loss(
    model: torch.nn.Module, batch: MicroBatch, method: Method, call_objective: str, call_token_id: int, seed: int, step: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective of one micro-batch and its metric sums (`trainer.metrics.SUMS`, detached).
    A method that does not call has empty masks: `full` is then A.1."""
    logits = model(batch.inputs)
    logits = logits.view(-1, logits.shape[-1])
    targets = batch.targets.reshape(-1)
    stats = logit_stats(logits, targets, call_token_id)
    call, ignore = method.masks(batch.labels, stats.token_loss, mask_generator(seed, step, batch.index))
    loss = lacy_loss_from_stats(logits, targets, stats, call, ignore, call_objective if method.calls else FULL)
    return loss, micro_batch_sums(stats, call, ignore, loss)


class StepRunner:
    """Forward, backward and optimizer step over one step's micro-batches (shared by the
    train loop and bench/train_step.py)."""

    def __init__(
        self, model: GPT, settings: RunSettings, method: Method, call_objective: str, call_token_id: int, seed: int, dist_: Dist,
        fused_adamw: bool = True,
    ):
        self.model, self.settings, self.method, self.call_objective = model, settings, method, check_objective(call_objective)
        self.call_token_id, self.seed, self.dist = call_token_id, seed, dist_
        self.optimizer = build_optimizer(model, settings, fused_adamw)
        self.wrapped = DDP(model, device_ids=[dist_.device] if dist_.device.type == "cuda" else None) if dist_.world_size > 1 else model
        cuda = dist_.device.type == "cuda"
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext

    def step(self, step: int, batches: list[MicroBatch]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the metric sums of these micro-batches and the gradient norm."""
        lr = learning_rate(self.settings, step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sums = torch.zeros(len(SUMS), device=self.dist.device)
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            sync = contextlib.nullcontext() if last or self.wrapped is self.model else self.wrapped.no_sync()
            with sync:
                with self.autocast():
                    loss, batch_sums = micro_batch_loss(
                        self.wrapped, batch, self.method, self.call_objective, self.call_token_id, self.seed, step
                    )
                (loss / len(batches)).backward()
            sums += batch_sums
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return sums, grad_norm


def truncate_log(path: Path, step: int) -> list[int]:
    """Drop the lines of a JSON-lines log (metrics.jsonl, probe.jsonl) logged after the
    checkpoint we resume from (a killed run wrote them); returns the steps of the lines kept."""
    if not path.exists():
        return []
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep))
    return [json.loads(line)["step"] for line in keep]


def call_objective(cfg: TrainConfig, method: Method) -> str | None:
    """The run's call objective; None for a method that does not call (baseline, reference),
    whose objective is A.1 whatever the flag says."""
    return check_objective(cfg.call_objective) if method.calls else None


def run_fingerprint(cfg: TrainConfig, settings: RunSettings, docs: Documents, method: Method) -> str:
    """What must not change between a checkpoint and its resume (steps and logging may). The
    call objective enters only for methods that call, so a non-calling run keeps its identity; the
    fused AdamW kernel only when used, so a run of the per-tensor kernel (the default until fused
    became it) keeps its own and is never resumed with the other kernel."""
    shape = {k: v for k, v in settings.to_dict().items() if k not in ("steps", "save_every", "log_every")}
    objective = call_objective(cfg, method)
    tags = ([objective] if objective else []) + (["fused_adamw"] if cfg.fused_adamw else [])
    return fingerprint(cfg.method, cfg.preset, shape, docs.fingerprint, cfg.seed, *tags)


def train(cfg: TrainConfig, reporter: Reporter | None = None, log: Callable[[str], None] = print) -> Path:
    """Train (or resume) a run; returns the final checkpoint's path."""
    d = setup_distributed()
    method = get_method(cfg.method)
    settings = get_preset(cfg.preset).run(cfg.method)
    total = cfg.max_steps if cfg.max_steps is not None else settings.steps
    save_every = cfg.save_every or settings.save_every
    log_every = cfg.log_every or settings.log_every
    out = Path(cfg.out)
    say = log if d.main else (lambda _msg: None)

    docs = load_documents(list(cfg.data), "train", judge_dirs=list(cfg.judge), ref_loss_dirs=list(cfg.ref_losses),
                          needs=method.needs, method=cfg.method, cache_dir=cfg.cache_dir)
    tok = Tokenizer(docs.tokenizer["path"])
    for source in docs.sources:
        if method.needs.judge and source["unannotated_docs"]:
            say(f"{source['path']}: {source['unannotated_docs']} documents without LLM-judge annotation train without calls")
    g = settings.micro_batches_per_step()
    settings.grad_accumulation(d.world_size)  # fails early when the batch does not split
    loader = PackedLoader(docs, settings.context, settings.micro_batch_size, g, cfg.seed, d.rank, d.world_size)
    torch.manual_seed(cfg.seed)
    model = GPT(model_config(settings.model_size, tok.vocab_size, context=settings.context)).to(d.device)
    objective = call_objective(cfg, method)
    runner = StepRunner(model, settings, method, objective or FULL, tok.call_id, cfg.seed, d, cfg.fused_adamw)
    info = {
        "format": 1, "method": cfg.method, "preset": cfg.preset, "seed": cfg.seed, "world_size": d.world_size,
        "run": {**settings.to_dict(), "steps": total, "save_every": save_every, "log_every": log_every}, "model_size": settings.model_size, "model": asdict(model.cfg),
        "num_params": model.num_params(), "call_token_id": tok.call_id, "eos_id": tok.eos_id, "bos_id": tok.bos_id,
        "data": docs.recorded_sources(cfg.root), "data_fingerprint": docs.fingerprint,
        "run_fingerprint": run_fingerprint(cfg, settings, docs, method), "call_objective": objective,
        "tokens_per_step": loader.tokens_per_step, "fused_adamw": bool(runner.optimizer.defaults["fused"]),
    }

    start = 0
    if d.main:
        clean_partial(out)
    resume = latest_checkpoint(out)
    if resume is not None:
        if resume.info.get("run_fingerprint") != info["run_fingerprint"]:
            raise ValueError(
                f"{resume.path / INFO_FILE}: {out} holds a different run (method, preset, data, seed or call "
                "objective differ); use another --out to start a new run"
            )
        start = _restore(resume, model, runner, loader, d)
        say(f"resumed from {resume.path} at step {start}")
    if start >= total:
        return resume.path
    probe = None
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        truncate_log(out / METRICS_FILE, start)
        if cfg.probe:
            probe = load_probe(cfg.probe, docs, settings.context, settings.micro_batch_size, method, cfg.seed, tok.call_id,
                               d.device, runner.autocast)
            probe.resume(model, start, truncate_log(out / PROBE_FILE, start))
            say(f"probe {cfg.probe}: tokens per kind {probe.counts()}")
    say(f"{cfg.method} ({objective or 'A.1'} objective) on {cfg.preset}: {model.num_params() / 1e6:.1f}M parameters, {docs.num_docs} documents, "
        f"{int(docs.offsets[-1])} tokens, steps {start}->{total}, {g} micro-batches of {settings.micro_batch_size}x"
        f"{settings.context} per step over {d.world_size} process(es)")

    reporters = Reporters(reporter, open_writers(cfg, out, start, info)) if d.main else None
    metrics = MetricsLog(out / METRICS_FILE, loader.tokens_per_step, d, reporters, say)
    path = None
    try:
        for step in range(start, total):
            t0 = time.perf_counter()
            _, batches = loader.next_step()
            batches = [b.to(d.device) for b in batches]
            data_seconds = time.perf_counter() - t0
            sums, grad_norm = runner.step(step, batches)
            metrics.add(sums, data_seconds)
            done = step + 1
            if done % log_every == 0 or done == total:
                metrics.flush(done, learning_rate(settings, step), grad_norm)
                if probe is not None:
                    probe.log(out / PROBE_FILE, model, done)
                    metrics.restart_clock()  # the probe's time is in probe.jsonl, not in the next interval's step time
            if done % save_every == 0 or done == total:
                info_now = {**info, "step": done, "tokens_seen": done * loader.tokens_per_step}
                path = _save(out, done, model, runner, loader, docs.tokenizer["path"], info_now, d)
                if reporters is not None:
                    reporters.checkpoint(path, info_now)
    finally:
        if reporters is not None:
            reporters.close()
    if d.world_size > 1:
        dist.barrier()
    return path


class MetricsLog:
    """Sums the metrics of a logging interval; at each flush reduces them over processes and,
    on rank 0, appends a line to metrics.jsonl and calls the reporter."""

    def __init__(self, path: Path, tokens_per_step: int, d: Dist, reporter: Reporter | None, say: Callable[[str], None]):
        self.path, self.tokens_per_step, self.d, self.reporter, self.say = path, tokens_per_step, d, reporter, say
        self.sums = torch.zeros(len(SUMS), device=d.device)
        self.t_start = time.perf_counter()
        self._reset()

    def _reset(self) -> None:
        self.sums.zero_()
        self.data_seconds, self.steps = 0.0, 0
        self.restart_clock()

    def restart_clock(self) -> None:
        self.t0 = time.perf_counter()

    def add(self, sums: torch.Tensor, data_seconds: float) -> None:
        self.sums += sums
        self.data_seconds += data_seconds
        self.steps += 1

    def flush(self, step: int, lr: float, grad_norm: torch.Tensor) -> dict:
        if self.d.world_size > 1:
            dist.all_reduce(self.sums)
        if self.d.device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        seconds = now - self.t0
        metrics = {
            "step": step, "tokens": step * self.tokens_per_step, **interval_metrics(self.sums), "lr": lr,
            "grad_norm": float(grad_norm), "tokens_per_s": self.steps * self.tokens_per_step / seconds,
            "step_time_s": seconds / self.steps, "data_share": self.data_seconds / seconds, "elapsed_s": now - self.t_start,
        }
        if self.d.main:
            with open(self.path, "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if self.reporter is not None:
                self.reporter.log(step, metrics)
            self.say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
        self._reset()
        return metrics


def _rng_state(d: Dist) -> dict:
    state = {"torch": torch.get_rng_state()}
    if d.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(d.device)
    return state


def _save(out: Path, step: int, model: GPT, runner: StepRunner, loader: PackedLoader, tokenizer: str, info: dict, d: Dist) -> Path:
    rng = [_rng_state(d)]
    if d.world_size > 1:
        rng = [None] * d.world_size
        dist.all_gather_object(rng, _rng_state(d))
    path = out / f"step-{step:08d}"
    if d.main:
        state = {"step": step, "optimizer": runner.optimizer.state_dict(), "rng": rng, "loader": loader.state_dict()}
        path = save_checkpoint(out, step, model, tokenizer, info, state)
    if d.world_size > 1:
        dist.barrier()
    return path


def _restore(ckpt: Checkpoint, model: GPT, runner: StepRunner, loader: PackedLoader, d: Dist) -> int:
    state = load_trainer_state(ckpt.path)
    model.load_hf_state_dict({k: v.to(d.device) for k, v in load_file(ckpt.path / WEIGHTS_FILE).items()})
    runner.optimizer.load_state_dict(state["optimizer"])
    loader.load_state_dict(state["loader"])
    if len(state["rng"]) == d.world_size:
        torch.set_rng_state(state["rng"][d.rank]["torch"])
        if "cuda" in state["rng"][d.rank] and d.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"][d.rank]["cuda"], d.device)
    return int(state["step"])
