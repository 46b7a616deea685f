"""The training objectives of A.4.2.

`lacy_loss` is eq. A.4, the general case:

    L = -(1/N) sum_i [ (1 - C_i)(1 - I_i) log p_CALL(x_{i+1} | x_{1:i})  +  C_i log p(<CALL> | x_{1:i}) ]

with N the number of positions, C the call mask, I the ignore mask, p the softmax over the
whole vocabulary and p_CALL the softmax with the <CALL> logit set to -inf (renormalized over
the text vocabulary). A.3 (calls only) is the case I = 0. A.2 (ignore without calls) is
written in the paper with another normalization, 1 / sum(1 - I); no method of Table 5 ignores
without calling, so it is not implemented. A.1, the baseline's plain cross-entropy over the
whole vocabulary (<CALL> included in the normalization, so its probability is trained toward
zero), is `baseline_loss`; `lacy_loss` with C = I = 0 equals it up to that normalization.
Where C and I overlap the call term wins, as in A.4. As written, A.3/A.4 exert no pressure
on p(<CALL>) at non-call positions (their term renormalizes <CALL> away); the paper decodes
calls by ranking the <CALL> logit (A.4.3, A.5), and the train loop logs the mean p(<CALL>)
at non-call positions (`non_call_p_call`).

Cost: one pass over the logits forward and one backward, as plain cross-entropy. <CALL> is
the last id, so the text logits are the slice `logits[:, :-1]` (a view). `logit_stats`
computes per position the log-sum-exp over that slice in row blocks small enough to stay in
cache; the loss is then O(N) arithmetic on those statistics, and `_SoftmaxLoss.backward` writes
the gradient in one blocked pass (`_SoftmaxLoss`, which also serves A.1):

    d L / d z_j     = (1/N) [ (w + c (1 - p(CALL))) p_CALL(j) - w [j = x_{i+1}] ]   (j text)
    d L / d z_CALL  = -(1/N) c (1 - p(CALL))

with w = (1 - C)(1 - I) and c = C. The per-token losses the masks rank on come from the same
statistics, without a second pass (`LogitStats.token_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK_ELEMENTS = 1 << 18  # logits per block on CPU (1 MiB of fp32): stays in L2


@dataclass(frozen=True)
class LogitStats:
    """Per-position statistics of one forward pass (fp32, no grad), all of shape (N,)."""

    lse: torch.Tensor  # log-sum-exp of the text logits (the vocabulary without <CALL>)
    target_logit: torch.Tensor  # logit of the true next token x_{i+1}
    call_logit: torch.Tensor  # logit of <CALL>

    @property
    def token_loss(self) -> torch.Tensor:
        """-log p_CALL(x_{i+1}): the model's own loss on the true token (what masks rank on)."""
        return self.lse - self.target_logit

    @property
    def full_lse(self) -> torch.Tensor:
        return torch.logaddexp(self.lse, self.call_logit)

    @property
    def call_logprob(self) -> torch.Tensor:
        """log p(<CALL>), the call term of A.3/A.4."""
        return self.call_logit - self.full_lse

    @property
    def full_token_loss(self) -> torch.Tensor:
        """-log p(x_{i+1}) under the whole vocabulary (the call loss of A.5)."""
        return self.full_lse - self.target_logit


def _acc(t: torch.Tensor) -> torch.Tensor:
    """At least fp32 (bf16 logits on GPU are reduced in fp32; fp64 stays fp64 for gradcheck)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _row_block(logits: torch.Tensor) -> int:
    if logits.is_cuda:
        return logits.shape[0]  # one kernel per op; blocking only pays off for CPU caches
    return max(1, BLOCK_ELEMENTS // logits.shape[1])


def _check(logits: torch.Tensor, targets: torch.Tensor, call_token_id: int) -> None:
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (N, V) and targets (N,); got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if call_token_id != logits.shape[1] - 1:
        raise ValueError(f"<CALL> must be the last id ({logits.shape[1] - 1}), got {call_token_id}")


def _blocked_lse(logits: torch.Tensor, cols: int) -> torch.Tensor:
    """log-sum-exp of `logits[:, :cols]` per row, in cache-sized row blocks."""
    step = _row_block(logits)
    return torch.cat([torch.logsumexp(_acc(logits[r : r + step, :cols]), dim=1) for r in range(0, logits.shape[0], step)])


@torch.no_grad()
def logit_stats(logits: torch.Tensor, targets: torch.Tensor, call_token_id: int) -> LogitStats:
    """The statistics of `logits` (N, V) for next tokens `targets` (N,), in one blocked pass."""
    _check(logits, targets, call_token_id)
    lse = _blocked_lse(logits, call_token_id)
    # .clone(): a view of `logits` would keep requires_grad even under no_grad
    return LogitStats(lse, _acc(logits.gather(1, targets[:, None]).squeeze(1)), _acc(logits[:, call_token_id].clone()))


class _SoftmaxLoss(torch.autograd.Function):
    """-(1/N) sum_i [w_i log q(x_{i+1}) + c_i log p(<CALL>)] with q the softmax over the first
    `cols` logits (whose log-sum-exp `lse` is given): A.3/A.4 with cols = V - 1, A.1 with
    cols = V and c = 0. Forward is O(N); backward writes the gradient in one blocked pass."""

    @staticmethod
    def forward(ctx, logits, targets, lse, target_logit, call_logprob, c, w, cols):
        loss = (w * (lse - target_logit) - c * call_logprob).sum() / logits.shape[0]
        ctx.save_for_backward(logits, targets, lse, call_logprob, c, w)
        ctx.cols = cols
        return loss

    @staticmethod
    def backward(ctx, grad_out):
        logits, targets, lse, call_logprob, c, w = ctx.saved_tensors
        n, v = logits.shape
        cols = ctx.cols
        scale = grad_out.to(lse.dtype) / n
        not_call_prob = -torch.expm1(call_logprob)  # 1 - p(CALL), accurate when p(CALL) -> 1
        a = ((w + c * not_call_prob) * scale)[:, None]
        grad = torch.empty_like(logits)
        step = _row_block(logits)
        for r in range(0, n, step):
            # a * q(j), computed in cache-sized blocks and written straight into the gradient
            block = torch.sub(_acc(logits[r : r + step, :cols]), lse[r : r + step, None])
            grad[r : r + step, :cols] = block.exp_().mul_(a[r : r + step])
        rows = torch.arange(n, device=logits.device)
        grad[rows, targets] -= (w * scale).to(grad.dtype)
        if cols < v:
            grad[:, v - 1] = (-c * not_call_prob * scale).to(grad.dtype)
        return grad, None, None, None, None, None, None, None


def lacy_loss_from_stats(
    logits: torch.Tensor, targets: torch.Tensor, stats: LogitStats, call_mask: torch.Tensor, ignore_mask: torch.Tensor
) -> torch.Tensor:
    """Eq. A.4 from precomputed `logit_stats` (the train loop computes them once, builds the
    masks from `stats.token_loss`, then calls this)."""
    c = call_mask.reshape(-1).to(stats.lse.dtype)
    w = (1 - c) * (1 - ignore_mask.reshape(-1).to(stats.lse.dtype))
    return _SoftmaxLoss.apply(logits, targets, stats.lse, stats.target_logit, stats.call_logprob, c, w, logits.shape[1] - 1)


def lacy_loss(
    logits: torch.Tensor, targets: torch.Tensor, call_mask: torch.Tensor, ignore_mask: torch.Tensor, call_token_id: int
) -> torch.Tensor:
    """Eq. A.4: logits (..., V) with <CALL> at `call_token_id` = V - 1, next tokens
    `targets` (...), boolean `call_mask` and `ignore_mask` (...). Returns the scalar loss."""
    logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    return lacy_loss_from_stats(logits, targets, logit_stats(logits, targets, call_token_id), call_mask, ignore_mask)


def baseline_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. A.1: mean cross-entropy over the whole vocabulary (`F.cross_entropy`'s value and
    gradient, through the same blocked pass as `lacy_loss`, which is faster on CPU)."""
    logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    with torch.no_grad():
        lse = _blocked_lse(logits, logits.shape[1])
        target_logit = _acc(logits.gather(1, targets[:, None]).squeeze(1))
    zero, one = torch.zeros_like(lse), torch.ones_like(lse)
    return _SoftmaxLoss.apply(logits, targets, lse, target_logit, zero, zero, one, logits.shape[1])
