"""The call mask C_M a model decodes from its own `<CALL>` logits (A.4.3): used by validation,
the testbed's call decisions and the trainer's mechanism probe (`trainer.probe`)."""

from __future__ import annotations

import torch

from trainer.masks import CALL_FRACTION, num_calls


def call_is_top(logits: torch.Tensor, call_id: int) -> torch.Tensor:
    """Where the `<CALL>` logit is the top logit (a tie with another token counts as top)."""
    others = torch.cat([logits[..., :call_id], logits[..., call_id + 1:]], dim=-1)
    return logits[..., call_id] >= others.max(dim=-1).values


def decode_call_mask(logits: torch.Tensor, call_id: int, fraction: float = CALL_FRACTION,
                     candidates: torch.Tensor | None = None) -> torch.Tensor:
    """The call mask C_M of A.4.3 over all positions of `logits` [..., vocab].

    Positions where the call logit is the top logit (ties count as top) are calls; if there
    are more than `fraction` of all positions, keep those with the highest call logits; if
    fewer, add the positions with the next-highest call logits until `fraction` is reached.
    Only `candidates` (bool [...], default all) can be calls; the budget counts all positions.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    call = flat[:, call_id]
    allowed = torch.ones_like(call, dtype=torch.bool) if candidates is None else candidates.reshape(-1)
    is_top = call_is_top(flat, call_id) & allowed
    k = min(num_calls(len(call), fraction), int(allowed.sum()))
    top = is_top.nonzero().flatten()
    if len(top) >= k:
        chosen = top[call[top].topk(k).indices]
    else:
        rest = (~is_top & allowed).nonzero().flatten()
        chosen = torch.cat([top, rest[call[rest].topk(k - len(top)).indices]])
    mask = torch.zeros(len(call), dtype=torch.bool, device=logits.device)
    mask[chosen] = True
    return mask.reshape(logits.shape[:-1])
