"""The training metrics: per micro-batch sums from the `LogitStats` the step already has (no
extra pass over the logits), summed over a logging interval's micro-batches and processes,
then turned into means (`interval_metrics`). One line of `metrics.jsonl` per logging step:

    loss                     the objective (`call_objective` for methods that call, A.1 otherwise)
    call_loss                -log p(x_{i+1}) at call positions (A.5, on the training mask)
    call_loss_renormalized   -log p_CALL(x_{i+1}) at call positions
    non_call_loss            -log p_CALL(x_{i+1}) at non-call positions (A.6)
    non_call_loss_full       -log p(x_{i+1}) at non-call positions (the baseline's A.1 loss)
    call_target_loss         -log p(<CALL>) at call positions (the call term of A.3/A.4)
    p_call_at_call           mean p(<CALL>) at call positions
    p_call_at_non_call       mean p(<CALL>) at non-call positions
    call_top_fraction        share of positions where the <CALL> logit is the argmax
    call_auc                 ROC AUC of the <CALL> logit against the call mask within a
                             micro-batch, averaged over the interval's micro-batches that have
                             both calls and non-calls (null without any: the baseline)
    call_fraction, ignore_fraction   realized shares of tokens (ignore counts I and not C)
    lr, grad_norm (before clipping, last step), tokens (seen so far, all processes),
    tokens_per_s, step_time_s, data_share (share of step time spent producing batches),
    elapsed_s (this process, since start or resume)

A `*_call` mean is null when the interval had no calls.
"""

from __future__ import annotations

import torch

from trainer.objective import LogitStats

METRICS = ("step", "tokens", "loss", "call_loss", "call_loss_renormalized", "non_call_loss", "non_call_loss_full",
           "call_target_loss", "p_call_at_call", "p_call_at_non_call", "call_top_fraction", "call_auc", "call_fraction",
           "ignore_fraction", "lr", "grad_norm", "tokens_per_s", "step_time_s", "data_share", "elapsed_s")
# The order of the summed tensor (reduced over processes in one all_reduce).
SUMS = ("tokens", "calls", "non_calls", "ignored", "loss", "call_loss", "call_loss_renormalized", "non_call_loss",
        "non_call_loss_full", "call_target_loss", "p_call_at_call", "p_call_at_non_call", "call_top", "call_auc",
        "auc_batches")
# metric: (sum, count it is the mean over)
_MEANS = {
    "loss": ("loss", "tokens"),
    "call_loss": ("call_loss", "calls"),
    "call_loss_renormalized": ("call_loss_renormalized", "calls"),
    "non_call_loss": ("non_call_loss", "non_calls"),
    "non_call_loss_full": ("non_call_loss_full", "non_calls"),
    "call_target_loss": ("call_target_loss", "calls"),
    "p_call_at_call": ("p_call_at_call", "calls"),
    "p_call_at_non_call": ("p_call_at_non_call", "non_calls"),
    "call_top_fraction": ("call_top", "tokens"),
    "call_auc": ("call_auc", "auc_batches"),
    "call_fraction": ("calls", "tokens"),
    "ignore_fraction": ("ignored", "tokens"),
}


def roc_auc(score: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(AUC, defined) of `score` (n,) ranking the `positive` (bool, n) positions above the
    others: the Mann-Whitney U over positives x negatives, ties counted half. `defined` is
    False (and AUC 0) without both classes. Tensors, no host sync."""
    score = score.double().contiguous()
    ordered = torch.sort(score).values
    # 1-based mid-rank of each score among all: ties share the mean of their ranks
    rank = (torch.searchsorted(ordered, score, right=False) + torch.searchsorted(ordered, score, right=True) + 1) / 2
    pos = positive.double()
    p = pos.sum()
    q = score.numel() - p
    defined = (p > 0) & (q > 0)
    u = (rank * pos).sum() - p * (p + 1) / 2
    return torch.where(defined, u / (p * q).clamp(min=1), torch.zeros_like(u)), defined


def micro_batch_sums(stats: LogitStats, call: torch.Tensor, ignore: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
    """The `SUMS` of one micro-batch (detached, in `SUMS` order)."""
    c = call.to(stats.lse.dtype)
    nc = 1 - c
    p_call = stats.call_logprob.exp()
    auc, defined = roc_auc(stats.call_logit, call)
    n = torch.tensor(float(c.numel()), dtype=c.dtype, device=c.device)
    sums = {
        "tokens": n,
        "calls": c.sum(),
        "non_calls": nc.sum(),
        "ignored": (ignore & ~call).to(c.dtype).sum(),
        "loss": loss.detach().to(c.dtype) * n,
        "call_loss": (stats.full_token_loss * c).sum(),
        "call_loss_renormalized": (stats.token_loss * c).sum(),
        "non_call_loss": (stats.token_loss * nc).sum(),
        "non_call_loss_full": (stats.full_token_loss * nc).sum(),
        "call_target_loss": -(stats.call_logprob * c).sum(),
        "p_call_at_call": (p_call * c).sum(),
        "p_call_at_non_call": (p_call * nc).sum(),
        "call_top": stats.call_top.to(c.dtype).sum(),
        "call_auc": auc.to(c.dtype),
        "auc_batches": defined.to(c.dtype),
    }
    return torch.stack([sums[k] for k in SUMS])


def interval_metrics(sums: torch.Tensor) -> dict[str, float | None]:
    """The means of summed `SUMS` (null where their count is zero)."""
    s = dict(zip(SUMS, sums.tolist()))
    return {name: s[total] / s[count] if s[count] > 0 else None for name, (total, count) in _MEANS.items()}
