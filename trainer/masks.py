"""Call and ignore masks for every method of Table 5, built per micro-batch.

A micro-batch is what one forward pass sees (`micro_batch_size` sequences of one process);
"15% of the tokens of each mini-batch" (section 4, Table 5) is counted over it. Defining it
so makes a 2-process DDP run equal a 1-process run accumulating gradients over the same
micro-batches. All inputs are per *target* position, flattened to (n,).

- baseline: no mask.
- loss_based: C ~ Bernoulli(0.15) per token, as Table 5 writes (15% in expectation).
- rho1: C = the 15% of tokens with the lowest own loss minus reference loss (Rho-1's
  "excess loss"; the paper trains on high scores and delegates the low ones).
- llm_judge: C = the LLM-judge labels as given (A.2.2); not forced to 15%.
- spacy: 15% of tokens, sampled uniformly among spaCy fact tokens (section 5.4).
- lacy: the fact tokens with the highest own loss, 15% of tokens (section 4).
- spacy_refloss: the fact tokens with the highest reference loss, 15% of tokens.
- lacy_ignorefacts: C as lacy; I = fact * (1 - C).
- lacy_ignore: C as lacy; I = fact * (1 - C) plus the highest-own-loss tokens of the *other*
  class until 15% of tokens are ignored. Table 5 writes the extra set as a top-k% of
  L(B_grammar), but section 5.4 and A.2.1 say these are "non-factual and non-grammatical
  tokens", i.e. the `other` class; we follow the text. When fact * (1 - C) alone exceeds 15%
  (the embedded corpus has ~38% facts) nothing is added and the realized ignore fraction is
  reported.

"15% of tokens" is k = round(0.15 * n). When fewer candidates exist than k (e.g. fewer fact
tokens than 15%), all candidates are calls and the realized fraction is what the train loop
reports. Ranks are exact and deterministic: ties go to the earlier position. Losses ranked
on are the model's own per-token loss -log p_CALL(x_{i+1}) in this forward pass, detached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CALL_FRACTION = 0.15
IGNORE_FRACTION = 0.15  # LaCy + Ignore


@dataclass(frozen=True)
class Method:
    name: str
    calls: bool = True  # trains toward <CALL>; False: the baseline objective (A.1)
    needs_facts: bool = False
    needs_judge: bool = False
    needs_ref_loss: bool = False
    needs_token_loss: bool = False  # ranks on the model's own loss
    step_factor: float = 1 / 0.85  # training steps relative to the baseline (A.4.1)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("baseline", calls=False, step_factor=1.0),
        Method("loss_based"),
        Method("rho1", needs_ref_loss=True, needs_token_loss=True),
        Method("llm_judge", needs_judge=True),
        Method("spacy", needs_facts=True),
        Method("lacy", needs_facts=True, needs_token_loss=True),
        Method("spacy_refloss", needs_facts=True, needs_ref_loss=True),
        # "trained 10% / 15% longer" than the calling methods (section 5.4, A.4.1)
        Method("lacy_ignorefacts", needs_facts=True, needs_token_loss=True, step_factor=1 / 0.85 * 1.10),
        Method("lacy_ignore", needs_facts=True, needs_token_loss=True, step_factor=1 / 0.85 * 1.15),
    )
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


@dataclass(frozen=True)
class TokenLabels:
    """Per target position of one micro-batch, flattened to (n,)."""

    fact: torch.Tensor  # bool: spaCy class fact
    other: torch.Tensor  # bool: spaCy class other (neither fact nor grammatical)
    judge_call: torch.Tensor | None = None  # bool: LLM-judge <CALL> label
    ref_loss: torch.Tensor | None = None  # float: reference model's loss; NaN where unknown (EOS)


def num_calls(n: int, fraction: float = CALL_FRACTION) -> int:
    return round(fraction * n)


def top_k_mask(score: torch.Tensor, candidates: torch.Tensor, k: int, largest: bool = True) -> torch.Tensor:
    """The `k` candidates with the largest (or smallest) score, all of them if fewer; ties
    go to the earlier position (a stable sort, so the mask is exact and reproducible)."""
    mask = torch.zeros_like(candidates, dtype=torch.bool)
    k = min(k, int(candidates.sum()))
    if k <= 0:
        return mask
    fill = float("-inf") if largest else float("inf")
    keyed = torch.where(candidates, score.float(), torch.full_like(score, fill, dtype=torch.float32))
    order = torch.sort(keyed, descending=largest, stable=True).indices
    mask[order[:k]] = True
    return mask


def lacy_call_mask(token_loss: torch.Tensor, fact: torch.Tensor, call_fraction: float = CALL_FRACTION) -> torch.Tensor:
    """LaCy's call mask (section 4): the fact tokens with the highest loss, round(0.15 n) of
    them (or every fact token if there are fewer). Any shape; returns a bool mask of it."""
    shape = token_loss.shape
    mask = top_k_mask(token_loss.reshape(-1), fact.reshape(-1).bool(), num_calls(token_loss.numel(), call_fraction))
    return mask.reshape(shape)


def build_masks(
    method: str,
    labels: TokenLabels,
    token_loss: torch.Tensor | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(call_mask, ignore_mask), bool (n,), for one micro-batch. `token_loss` is the model's
    own detached loss per position (needed by the loss-ranked methods); `generator` seeds
    the random methods (a CPU generator, seeded per micro-batch by the train loop)."""
    m = get_method(method)
    n = labels.fact.numel()
    device = labels.fact.device
    none = torch.zeros(n, dtype=torch.bool, device=device)
    k = num_calls(n)

    def uniform() -> torch.Tensor:
        return torch.rand(n, generator=generator).to(device)

    if m.name == "baseline":
        return none, none
    if m.name == "loss_based":
        return uniform() < CALL_FRACTION, none
    if m.name == "rho1":
        excess = token_loss - labels.ref_loss
        return top_k_mask(excess, torch.isfinite(excess), k, largest=False), none
    if m.name == "llm_judge":
        return labels.judge_call.bool(), none
    if m.name == "spacy":
        return top_k_mask(uniform(), labels.fact, k), none
    if m.name == "spacy_refloss":
        return top_k_mask(labels.ref_loss, labels.fact & torch.isfinite(labels.ref_loss), k), none
    call = lacy_call_mask(token_loss, labels.fact)
    if m.name == "lacy":
        return call, none
    ignore = labels.fact & ~call
    if m.name == "lacy_ignorefacts":
        return call, ignore
    extra = max(0, num_calls(n, IGNORE_FRACTION) - int(ignore.sum()))
    return call, ignore | top_k_mask(token_loss, labels.other & ~call, extra)
