"""Training assets: the reference model and its per-token losses, and one model per method
of Table 5. Each launches its torchrun command (`assets.pipes_train`, `assets.pipes_score`)
through the `pipes_subprocess_client` resource's own `run(command=, context=, env=)`, so any
Pipes client bound to that key (a Kubernetes or Docker one) runs it; training writes a run
directory of its own and shows its loss curves.

While a model trains, every line the trainer appends to `metrics.jsonl` becomes an
`AssetObservation` of the asset (the UI plots them live, in the asset's Plots tab): a thread
tails the file, which lies in the shared artifact storage, while the client's blocking call
runs; so the client keeps its own process handling (termination forwarding included). A failed
training step is retried (`TRAINING_RETRIES`): the retry runs in the same run, hence the same
run directory, so the trainer resumes from the newest checkpoint.
"""

import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib.pyplot as plt
from dagster import (
    AssetExecutionContext,
    AssetObservation,
    AssetsDefinition,
    Backoff,
    Config,
    MaterializeResult,
    MetadataValue,
    PipesClient,
    ResourceParam,
    RetryPolicy,
    asset,
)

from assets.data import extra_token_shards, lmlm_judge_labels, token_shards
from assets.metadata import md_plot
from assets.resources import LacyStorage
from pipelines.files import code_fingerprint, read_json, write_json
from pipelines.presets import preset_name
from trainer import data as trainer_data
from trainer import masks, model, objective, train
from trainer.checkpoint import latest_checkpoint
from trainer.masks import METHODS
from trainer.presets import REFERENCE
from trainer.train import METRICS_FILE

CALL_DECISION = {  # `trainer.metrics` names: the call-decision panel of the loss curves
    "call_top_fraction": "<CALL> is the top logit",
    "p_call_at_call": "mean p(<CALL>) at calls",
    "p_call_at_non_call": "mean p(<CALL>) at non-calls",
    "call_auc": "in-batch AUC of the <CALL> logit",
}
LATEST = "latest.json"  # <models>/<name>/latest.json: the run and final checkpoint of the last success
OBSERVED = ("loss", "call_loss", "non_call_loss", "call_fraction", "ignore_fraction", *CALL_DECISION, "lr", "grad_norm",
            "tokens_per_s")
POLL_SECONDS = 2.0  # how often the metrics file is read while the trainer runs
Pipes = ResourceParam[PipesClient]  # the `pipes_subprocess_client` resource: PipesSubprocessClient here, any Pipes client
TRAINING_RETRIES = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL)
TRAINER_CODE = code_fingerprint(trainer_data, masks, model, objective, train)


class TrainingConfig(Config):
    preset: str = preset_name()
    max_steps: int | None = None  # default: the preset's steps for the method (A.4.1 ratios)
    save_every: int | None = None
    nproc_per_node: int = 1  # processes (GPUs) on this machine; more nodes: run torchrun yourself
    seed: int = 0
    call_objective: str = objective.FULL  # `full` or `renormalized` (A.4 as printed); baseline/reference ignore it
    tensorboard: bool = False  # also write TensorBoard scalars under <run dir>/tensorboard/
    wandb_project: str | None = None  # also log to this W&B project (needs wandb)
    fused_adamw: bool = True  # the fused AdamW kernel; False: the per-tensor one (PyTorch's CPU default), not bit-identical
    cache_dir: str | None = None  # the loader's flat arrays (`trainer.data`); default: cache/ in the token shards' folder


def latest_run(storage: LacyStorage, name: str) -> dict[str, str]:
    """{"run_dir", "checkpoint"} (absolute paths) of the last successful training of `name`.
    The file records them relative to the storage root (older files: absolute)."""
    path = storage.path("models", name, LATEST)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trained {name} yet (materialize {name}_model first)")
    return {key: str(storage.resolve(ref)) for key, ref in read_json(path).items()}


def latest_checkpoint_of(storage: LacyStorage, name: str) -> str | None:
    """The final checkpoint of the last successful training of `name`, or None."""
    try:
        return latest_run(storage, name)["checkpoint"]
    except FileNotFoundError:
        return None


def _train(
    context: AssetExecutionContext,
    config: TrainingConfig,
    storage: LacyStorage,
    pipes: PipesClient,
    name: str,
    data: list[Path],
    judge: list[Path] = (),
    ref_losses: list[Path] = (),
) -> MaterializeResult:
    # A new materialization trains from scratch in its own run directory; a re-execution of a
    # failed run (same root run id) resumes from its newest checkpoint.
    run_dir = storage.path("models", name, f"run-{(context.run.root_run_id or context.run.run_id)[:8]}")
    flags = ["--preset", config.preset, "--method", name, "--out", str(run_dir), "--seed", str(config.seed),
             "--call-objective", config.call_objective, "--root", str(storage.path())]
    flags += [f for d in data for f in ("--data", str(d))]
    flags += [f for d in judge for f in ("--judge", str(d))]
    flags += [f for d in ref_losses for f in ("--ref-losses", str(d))]
    if config.max_steps is not None:
        flags += ["--max-steps", str(config.max_steps)]
    if config.save_every is not None:
        flags += ["--save-every", str(config.save_every)]
    flags += ["--tensorboard"] if config.tensorboard else []
    flags += ["--wandb-project", config.wandb_project] if config.wandb_project else []
    flags += [] if config.fused_adamw else ["--no-fused-adamw"]
    flags += ["--cache-dir", config.cache_dir] if config.cache_dir else []
    command, env = _torchrun(config.nproc_per_node, "assets.pipes_train", flags)
    context.log.info(" ".join(command))
    with observing(context, run_dir / METRICS_FILE):
        result = pipes.run(command=command, context=context, env=env).get_materialize_result()
    final = latest_checkpoint(run_dir)
    write_json(storage.path("models", name, LATEST), {"run_dir": storage.ref(run_dir), "checkpoint": storage.ref(final.path)})
    metrics = MetricsTail(run_dir / METRICS_FILE).new_rows()
    return MaterializeResult(
        metadata={
            **(result.metadata or {}),
            "checkpoint": MetadataValue.path(str(final.path)),
            "step": final.step,
            "method": name,
            "preset": config.preset,
            "call_objective": str(final.info.get("call_objective") or "none (A.1)"),
            "data_fingerprint": str(final.info.get("data_fingerprint")),
            "loss_curves": _loss_curves(metrics, name, run_dir / "loss_curves.png"),
            **_final_losses(metrics),
        }
    )


def _torchrun(nproc_per_node: int, module: str, flags: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment of `torchrun --standalone` on this machine, the cores shared by its processes."""
    threads = max(1, (os.cpu_count() or 1) // nproc_per_node)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
               "-m", module, *flags]
    return command, {"OMP_NUM_THREADS": str(threads)}


class MetricsTail:
    """The complete lines appended to a metrics.jsonl since the last call, so that a long run's
    file is not re-read at every poll. A resumed trainer rewrites the file in place: when it
    shrank, or the new bytes do not parse, it is read again from the start (callers skip the
    steps they have seen)."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def new_rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        start = self.offset
        with self.path.open("rb") as f:
            if f.seek(0, os.SEEK_END) < start:
                start = 0
            f.seek(start)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # the trainer may be writing the last line
        try:
            rows = [json.loads(line) for line in complete.decode().splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError):
            if start == 0:
                raise
            self.offset = 0
            return self.new_rows()
        self.offset = start + len(complete)
        return rows


@contextmanager
def observing(context: AssetExecutionContext, metrics: Path) -> Iterator[None]:
    """While the block runs (the Pipes client's blocking call), a thread records each metrics
    line the trainer appends as an `AssetObservation` (`context.log_event` stores it at once:
    live), every `POLL_SECONDS` and once more when the block ends, however it ends. The lines
    already in the file are not observed again: a retry resumes in the same run directory,
    whose steps up to the failure were observed. An error of the thread is raised after the
    block."""
    tail = MetricsTail(metrics)
    last = max((row["step"] for row in tail.new_rows()), default=0)
    stop, errors = threading.Event(), []

    def watch() -> None:
        nonlocal last
        try:
            while not stop.wait(POLL_SECONDS):
                last = _observe(context, tail, last)
            _observe(context, tail, last)
        except Exception as e:  # raised in the asset's own thread, after the block
            errors.append(e)

    thread = threading.Thread(target=watch, name=f"observe {metrics}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]


def _observe(context: AssetExecutionContext, tail: MetricsTail, after: int) -> int:
    """Record the newly logged steps past `after` as observations; returns the last step observed."""
    for row in tail.new_rows():
        if row["step"] > after:
            values = {k: float(row[k]) for k in OBSERVED if row.get(k) is not None}
            context.log_event(AssetObservation(asset_key=context.asset_key, metadata={"step": int(row["step"]), **values}))
            after = row["step"]
    return after


def _final_losses(metrics: list[dict]) -> dict:
    """Losses over the last tenth of training (less noisy than the last logging step)."""
    tail = metrics[-max(1, len(metrics) // 10) :]
    out = {}
    for key in ("loss", "call_loss", "non_call_loss", "call_fraction", *CALL_DECISION):
        values = [m[key] for m in tail if m.get(key) is not None]
        if values:
            out[f"final_{key}"] = round(sum(values) / len(values), 4)
    return out


def _loss_curves(metrics: list[dict], name: str, save_to: Path) -> MetadataValue:
    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 3.5))
    steps = [m["step"] for m in metrics]
    marker = "o" if len(steps) < 20 else None  # a short run still shows its points
    for key, style, label in (("loss", "-", "loss"), ("call_loss", "--", "call loss"), ("non_call_loss", ":", "non-call loss")):
        values = [m.get(key) for m in metrics]
        if any(v is not None for v in values):
            ax.plot(steps, values, style, marker=marker, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("nats per token")
    ax.set_title(f"{name}: training losses")
    ax.legend()
    ax2.plot(steps, [m.get("call_fraction", 0) for m in metrics], marker=marker, label="call fraction")
    ax2.plot(steps, [m.get("ignore_fraction", 0) for m in metrics], marker=marker, label="ignore fraction")
    ax2.set_xlabel("step")
    ax2.set_ylim(0, 0.5)
    ax2.set_title("realized masks")
    ax2.legend()
    for key, label in CALL_DECISION.items():
        values = [m.get(key) for m in metrics]
        if any(v is not None for v in values):
            ax3.plot(steps, values, marker=marker, label=label)
    ax3.set_xlabel("step")
    ax3.set_ylim(0, 1)
    ax3.set_title("call decision")
    ax3.legend(fontsize=8, loc="center right")
    return md_plot(fig, save_to)


@asset(
    group_name="models",
    deps=[token_shards, extra_token_shards],
    pool="gpu",
    code_version=TRAINER_CODE,
    retry_policy=TRAINING_RETRIES,
)
def reference_model(
    context: AssetExecutionContext, config: TrainingConfig, storage: LacyStorage, pipes_subprocess_client: Pipes
) -> MaterializeResult:
    """The reference model: baseline objective, trained longer and on more data (the corpus
    plus the extra lead sections). Rho-1 and spaCy+Refloss rank on its losses; at the embedded
    scale it is also the cascade partner."""
    data = [storage.path("token_shards"), storage.path("extra_token_shards")]
    return _train(context, config, storage, pipes_subprocess_client, REFERENCE, data)


class ReferenceLossesConfig(Config):
    batch_size: int = 16
    nproc_per_node: int = 1  # >1: that many torchrun processes (GPUs) score the shards in parallel


@asset(
    group_name="models",
    deps=[reference_model, token_shards],
    pool="gpu",
    code_version=TRAINER_CODE,
)
def reference_losses(
    context: AssetExecutionContext, config: ReferenceLossesConfig, storage: LacyStorage, pipes_subprocess_client: Pipes
) -> MaterializeResult:
    """Per-token losses of the reference model over the train shards, aligned to input_ids
    (`python -m trainer.score` under torchrun, through the Pipes client like the training)."""
    checkpoint = latest_run(storage, REFERENCE)["checkpoint"]
    out = storage.path("reference_losses")
    command, env = _torchrun(config.nproc_per_node, "assets.pipes_score", [
        "--checkpoint", checkpoint, "--data", str(storage.path("token_shards")), "--out", str(out),
        "--batch-size", str(config.batch_size), "--root", str(storage.path())])
    context.log.info(" ".join(command))
    scored = pipes_subprocess_client.run(command=command, context=context, env=env).get_materialize_result()
    return MaterializeResult(
        metadata={
            "reference_checkpoint": MetadataValue.path(checkpoint),
            **(scored.metadata or {}),
            "path": MetadataValue.path(str(out)),
        }
    )


def method_model(method: str) -> AssetsDefinition:
    """`<method>_model`: the method's masks (Table 5) on the shared trainer."""
    spec = METHODS[method]
    deps = [token_shards] + ([lmlm_judge_labels] if spec.needs.judge else []) + ([reference_losses] if spec.needs.ref_loss else [])

    @asset(
        name=f"{method}_model",
        group_name="models",
        deps=deps,
        pool="gpu",
        code_version=TRAINER_CODE,
        retry_policy=TRAINING_RETRIES,
        description=f"A GPT-2 trained with the `{method}` call/ignore masks of Table 5 (steps relative to the baseline: "
        f"{spec.step_factor:.3f}x).",
    )
    def _model(
        context: AssetExecutionContext, config: TrainingConfig, storage: LacyStorage, pipes_subprocess_client: Pipes
    ) -> MaterializeResult:
        judge = [storage.path("lmlm_judge_labels")] if spec.needs.judge else []
        ref = [storage.path("reference_losses")] if spec.needs.ref_loss else []
        return _train(context, config, storage, pipes_subprocess_client, method, [storage.path("token_shards")], judge, ref)

    return _model


METHOD_MODELS = [method_model(m) for m in METHODS]
TRAINING_ASSETS = [reference_model, reference_losses, *METHOD_MODELS]
