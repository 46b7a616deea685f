"""A training run's loss curves from its `metrics.jsonl` rows (`trainer.metrics` names): the
losses, the realized call and ignore fractions, and the call decision."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evaluation.report.figures import plt, save_figure

CALL_DECISION = {  # the call-decision panel: `trainer.metrics` name -> label
    "call_top_fraction": "<CALL> is the top logit",
    "p_call_at_call": "mean p(<CALL>) at calls",
    "p_call_at_non_call": "mean p(<CALL>) at non-calls",
    "call_auc": "in-batch AUC of the <CALL> logit",
}


def loss_curves(metrics: Sequence[dict], name: str, path: Path) -> Path:
    """Three panels against the step, written to `path`: loss, call and non-call loss (the
    ones logged); call and ignore fractions; the call decision (`CALL_DECISION`, those
    logged). Points are marked when there are fewer than 20 steps."""
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
    return save_figure(fig, path)
