"""The training objectives of A.4.2, two readings of its call objective, one mechanism.

`renormalized` is eq. A.4 as printed:

    L = -(1/N) sum_i [ (1 - C_i)(1 - I_i) log p_CALL(x_{i+1} | x_{1:i})  +  C_i log p(<CALL> | x_{1:i}) ]

with N the number of positions, C the call mask, I the ignore mask, p the softmax over the
whole vocabulary and p_CALL the softmax with the <CALL> logit set to -inf (renormalized over
the text vocabulary). `full` is the whole-vocabulary cross-entropy with the targets of call
positions swapped to <CALL> and the same ignore mask:

    L = -(1/N) sum_i [ (1 - C_i)(1 - I_i) log p(x_{i+1} | x_{1:i})  +  C_i log p(<CALL> | x_{1:i}) ]

i.e. A.4 plus -(1 - C)(1 - I) log(1 - p(<CALL>)) at the learned positions: it also trains
p(<CALL>) down where the model should write text, so that <CALL> is the top logit where it
should call (section 4 decodes "until a <CALL> token is generated"); A.4 as printed leaves
p(<CALL>) free at non-call positions. DEVIATIONS.md ("Objective") has the measurement and
the paper's quotes for each. A.3 (calls only) is the case I = 0. A.2 (ignore without calls)
is written in the paper with another normalization, 1 / sum(1 - I); no method of Table 5
ignores without calling, so it is not implemented. A.1, the baseline's plain cross-entropy
over the whole vocabulary, is `full` with C = I = 0 (`F.cross_entropy`'s value and gradient,
through the same blocked pass, faster on CPU). Where C and I overlap the call term wins, as
in A.4.

Cost: one pass over the logits forward and one backward, as plain cross-entropy. <CALL> is
the last id, so the text logits are the slice `logits[:, :-1]` (a view). `logit_stats`
computes per position the log-sum-exp and the maximum of that slice in row blocks small
enough to stay in cache; the loss is then O(N) arithmetic on those statistics. The text term
is a softmax q over the first `cols` columns (q = p_CALL with cols = V - 1, q = p with
cols = V), and `_SoftmaxLoss.backward` writes the gradient in one blocked pass. With
w = (1 - C)(1 - I) and c = C, per position (times 1/N):

    renormalized:  d L / d z_j     = (w + c (1 - p(CALL))) p_CALL(j) - w [j = x_{i+1}]   (j text)
                   d L / d z_CALL  = -c (1 - p(CALL))
    full:          d L / d z_j     = (w + c) p(j) - w [j = x_{i+1}] - c [j = CALL]        (every j)

Both are a(i) q(j) - w [j = x_{i+1}] on the softmax's columns, with a = w + c m and m the mass
p gives those columns (1 - p(CALL), or 1), plus the call term's -c on the <CALL> column
(renormalized: its whole gradient, c (p(CALL) - 1)). The per-token losses the masks rank on
come from the same statistics, without a second pass (`LogitStats.token_loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

BLOCK_ELEMENTS = 1 << 18  # logits per block on CPU (1 MiB of fp32): stays in L2

RENORMALIZED = "renormalized"  # A.4 as printed: the text term over p_CALL
FULL = "full"  # the text term over the whole vocabulary
CALL_OBJECTIVES = (FULL, RENORMALIZED)


@dataclass(frozen=True)
class LogitStats:
    """Per-position statistics of one forward pass (fp32, no grad), all of shape (N,)."""

    lse: torch.Tensor  # log-sum-exp of the text logits (the vocabulary without <CALL>)
    text_max: torch.Tensor  # the largest text logit
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

    @property
    def call_top(self) -> torch.Tensor:
        """Where <CALL> is the argmax of the logits (it is the last id: it loses ties)."""
        return self.call_logit > self.text_max


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


def check_objective(objective: str) -> str:
    if objective not in CALL_OBJECTIVES:
        raise ValueError(f"unknown call objective {objective!r}; choose one of {', '.join(CALL_OBJECTIVES)}")
    return objective


def _blocked_lse_max(logits: torch.Tensor, cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-sum-exp, max) of `logits[:, :cols]` per row, in cache-sized row blocks."""
    step = _row_block(logits)
    lse, top = [], []
    for r in range(0, logits.shape[0], step):
        block = _acc(logits[r : r + step, :cols])
        m = block.amax(dim=1)
        lse.append(torch.sub(block, m[:, None]).exp_().sum(dim=1).log_().add_(m))
        top.append(m)
    return torch.cat(lse), torch.cat(top)


@torch.no_grad()
def logit_stats(logits: torch.Tensor, targets: torch.Tensor, call_token_id: int) -> LogitStats:
    """The statistics of `logits` (N, V) for next tokens `targets` (N,), in one blocked pass."""
    _check(logits, targets, call_token_id)
    lse, text_max = _blocked_lse_max(logits, call_token_id)
    # .clone(): a view of `logits` would keep requires_grad even under no_grad
    target_logit = _acc(logits.gather(1, targets[:, None]).squeeze(1))
    return LogitStats(lse, text_max, target_logit, _acc(logits[:, call_token_id].clone()))


class _SoftmaxLoss(torch.autograd.Function):
    """-(1/N) sum_i [w_i log q(x_{i+1}) + c_i log p(<CALL>)] with q the softmax over the first
    `cols` logits (whose log-sum-exp `lse` is given): `renormalized` with cols = V - 1, `full`
    (and A.1, c = 0) with cols = V. Forward is O(N); backward writes the gradient in one
    blocked pass."""

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
        # the mass p gives q's columns: 1 - p(CALL) (accurate when p(CALL) -> 1), or all of it
        mass = -torch.expm1(call_logprob) if cols < v else torch.ones_like(call_logprob)
        a = ((w + c * mass) * scale)[:, None]
        grad = torch.empty_like(logits)
        step = _row_block(logits)
        for r in range(0, n, step):
            # a * q(j), computed in cache-sized blocks and written straight into the gradient
            block = torch.sub(_acc(logits[r : r + step, :cols]), lse[r : r + step, None])
            grad[r : r + step, :cols] = block.exp_().mul_(a[r : r + step])
        rows = torch.arange(n, device=logits.device)
        grad[rows, targets] -= (w * scale).to(grad.dtype)
        if cols < v:
            grad[:, v - 1] = (-c * mass * scale).to(grad.dtype)  # the call term alone: c (p(CALL) - 1)
        else:
            grad[:, v - 1] -= (c * scale).to(grad.dtype)
        return grad, None, None, None, None, None, None, None


def lacy_loss_from_stats(
    logits: torch.Tensor,
    targets: torch.Tensor,
    stats: LogitStats,
    call_mask: torch.Tensor,
    ignore_mask: torch.Tensor,
    objective: str,
) -> torch.Tensor:
    """The call objective `objective` (`renormalized`: eq. A.4; `full`) from precomputed
    `logit_stats` (the train loop computes them once, builds the masks from
    `stats.token_loss`, then calls this)."""
    c = call_mask.reshape(-1).to(stats.lse.dtype)
    w = (1 - c) * (1 - ignore_mask.reshape(-1).to(stats.lse.dtype))
    renormalized = check_objective(objective) == RENORMALIZED
    cols = logits.shape[1] - 1 if renormalized else logits.shape[1]
    lse = stats.lse if renormalized else stats.full_lse
    return _SoftmaxLoss.apply(logits, targets, lse, stats.target_logit, stats.call_logprob, c, w, cols)


def lacy_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    call_mask: torch.Tensor,
    ignore_mask: torch.Tensor,
    call_token_id: int,
    objective: str,
) -> torch.Tensor:
    """The call objective: logits (..., V) with <CALL> at `call_token_id` = V - 1, next
    tokens `targets` (...), boolean `call_mask` and `ignore_mask` (...). Returns the scalar loss."""
    logits = logits.reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1)
    stats = logit_stats(logits, targets, call_token_id)
    return lacy_loss_from_stats(logits, targets, stats, call_mask, ignore_mask, objective)
