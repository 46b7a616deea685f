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

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
from assets.metadata import md_png
from assets.models import LATEST, latest_run
from assets.resources import LacyStorage
from evaluation.report.loss_curves import CALL_DECISION, loss_curves
from pipelines.files import code_fingerprint, write_json
from pipelines.presets import preset_name
from trainer import data as trainer_data
from trainer import masks, model, objective, train
from trainer.argv import torchrun_command, train_argv
from trainer.checkpoint import latest_checkpoint
from trainer.masks import METHODS
from trainer.metrics_file import MetricsTail, final_means
from trainer.presets import REFERENCE
from trainer.train import METRICS_FILE, TrainConfig

OBSERVED = ("loss", "call_loss", "non_call_loss", "call_fraction", "ignore_fraction", *CALL_DECISION, "lr", "grad_norm",
            "tokens_per_s")
FINAL = ("loss", "call_loss", "non_call_loss", "call_fraction", *CALL_DECISION)  # `final_<key>` in the metadata
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
    trainer_config = TrainConfig(
        method=name, data=tuple(map(str, data)), out=str(run_dir), preset=config.preset, judge=tuple(map(str, judge)),
        ref_losses=tuple(map(str, ref_losses)), max_steps=config.max_steps, save_every=config.save_every, seed=config.seed,
        call_objective=config.call_objective, root=str(storage.path()), tensorboard=config.tensorboard,
        wandb_project=config.wandb_project, fused_adamw=config.fused_adamw, cache_dir=config.cache_dir)
    command, env = torchrun_command(config.nproc_per_node, "assets.pipes_train", train_argv(trainer_config))
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
            "loss_curves": md_png(loss_curves(metrics, name, run_dir / "loss_curves.png")),
            **final_means(metrics, FINAL),
        }
    )


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
    command, env = torchrun_command(config.nproc_per_node, "assets.pipes_score", [
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
