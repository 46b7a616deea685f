"""The methods of Table 5: each one `Method` (name, label, the labels it needs, its step
factor and its mask rule, one small function per row), masks built per micro-batch.

A micro-batch is what one forward pass sees (`micro_batch_size` sequences of one process);
"15% of the tokens of each mini-batch" (section 4, Table 5) is counted over it. Defining it
so makes a 2-process DDP run equal a 1-process run accumulating gradients over the same
micro-batches. All inputs are per *target* position, flattened to (n,). Adding a method is
a rule function and a row of `METHODS` (and its row in docs/training.md).

"15% of tokens" is k = round(0.15 * n), n counting every position (EOS targets too). When
fewer candidates exist than k (e.g. fewer fact tokens than 15%), all candidates are calls
and the realized fraction is what the train loop reports. Ranks are exact and deterministic:
ties go to the earlier position. Losses ranked on are the model's own per-token loss
-log p_CALL(x_{i+1}) in this forward pass, detached.

No rule calls or ignores an EOS target (`TokenLabels.eos`, the separator the loader puts
before each document): every rule chooses among the other positions (`MaskInputs.callable`,
`.fact`, `.other`), so `loss_based` draws Bernoulli(0.15) over the non-EOS positions, and
validation, which never calls an EOS (A.4.3's mask in `decode_call_mask`), sees the same
positions the training masks could have called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

CALL_FRACTION = 0.15
IGNORE_FRACTION = 0.15  # LaCy + Ignore


@dataclass(frozen=True)
class TokenLabels:
    """Per target position of one micro-batch, flattened to (n,)."""

    fact: torch.Tensor  # bool: spaCy class fact
    other: torch.Tensor  # bool: spaCy class other (neither fact nor grammatical)
    eos: torch.Tensor  # bool: the target is the EOS before a document (never a call, never ignored)
    judge_call: torch.Tensor | None = None  # bool: LLM-judge <CALL> label
    ref_loss: torch.Tensor | None = None  # float: reference model's loss; NaN where unknown (EOS)


@dataclass(frozen=True)
class MaskInputs:
    """What a mask rule sees of one micro-batch: labels, the model's own detached loss per
    position (loss-ranked rules), and the micro-batch's CPU generator (random rules)."""

    labels: TokenLabels
    token_loss: torch.Tensor | None = None
    generator: torch.Generator | None = None

    @property
    def n(self) -> int:
        return self.labels.fact.numel()

    @property
    def k(self) -> int:
        return num_calls(self.n)

    @property
    def none(self) -> torch.Tensor:
        return torch.zeros(self.n, dtype=torch.bool, device=self.labels.fact.device)

    @property
    def callable(self) -> torch.Tensor:
        """The positions a rule may call or ignore: every target but EOS."""
        return ~self.labels.eos

    @property
    def fact(self) -> torch.Tensor:
        return self.labels.fact & self.callable

    @property
    def other(self) -> torch.Tensor:
        return self.labels.other & self.callable

    def uniform(self) -> torch.Tensor:
        """One U(0, 1) draw per position (EOS targets included, so the stream of draws does not
        depend on where the EOS targets fall)."""
        return torch.rand(self.n, generator=self.generator).to(self.labels.fact.device)

    def uniform_sample(self, candidates: torch.Tensor) -> torch.Tensor:
        """k of the `candidates` (callable ones only) uniformly at random, all of them if fewer."""
        return top_k_mask(self.uniform(), candidates & self.callable, self.k)


Masks = tuple[torch.Tensor, torch.Tensor]  # (call_mask, ignore_mask), bool (n,)


def num_calls(n: int, fraction: float = CALL_FRACTION) -> int:
    """How many of `n` positions are calls: the one rule for "15% of tokens", in training and
    in the call mask decoded on validation (Python's round: half to even)."""
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


def no_masks(x: MaskInputs) -> Masks:
    """baseline: no mask."""
    return x.none, x.none


def loss_based_masks(x: MaskInputs) -> Masks:
    """loss_based: C ~ Bernoulli(0.15) per non-EOS token, as Table 5 writes (15% of them in
    expectation)."""
    return (x.uniform() < CALL_FRACTION) & x.callable, x.none


def rho1_masks(x: MaskInputs) -> Masks:
    """rho1: C = the 15% of tokens with the lowest own loss minus reference loss (Rho-1's
    "excess loss"; the paper trains on high scores and delegates the low ones)."""
    excess = x.token_loss - x.labels.ref_loss
    return top_k_mask(excess, torch.isfinite(excess) & x.callable, x.k, largest=False), x.none


def llm_judge_masks(x: MaskInputs) -> Masks:
    """llm_judge: C = the LLM-judge labels (A.2.2); where they exceed 15% of tokens, a
    uniform sample of 15% of tokens among them, as `spacy` samples its fact tokens (Table 5's
    caption: "The call masks are always chosen such that 15% of tokens are calls in each
    batch"). With fewer judge labels, all of them are calls."""
    return x.uniform_sample(x.labels.judge_call.bool()), x.none


def spacy_masks(x: MaskInputs) -> Masks:
    """spacy: 15% of tokens, sampled uniformly among spaCy fact tokens (section 5.4)."""
    return x.uniform_sample(x.fact), x.none


def spacy_refloss_masks(x: MaskInputs) -> Masks:
    """spacy_refloss: the fact tokens with the highest reference loss, 15% of tokens."""
    ref = x.labels.ref_loss
    return top_k_mask(ref, x.fact & torch.isfinite(ref), x.k), x.none


def lacy_masks(x: MaskInputs) -> Masks:
    """lacy: the fact tokens with the highest own loss, 15% of tokens (section 4)."""
    return lacy_call_mask(x.token_loss, x.fact), x.none


def lacy_ignorefacts_masks(x: MaskInputs) -> Masks:
    """lacy_ignorefacts: C as lacy; I = fact * (1 - C)."""
    call = lacy_call_mask(x.token_loss, x.fact)
    return call, x.fact & ~call


def lacy_ignore_masks(x: MaskInputs) -> Masks:
    """lacy_ignore: C as lacy; I = fact * (1 - C) plus the highest-own-loss tokens of the
    *other* class until 15% of tokens are ignored. Table 5 writes the extra set as a top-k% of
    L(B_grammar), but section 5.4 and A.2.1 say these are "non-factual and non-grammatical
    tokens", i.e. the `other` class; we follow the text. When fact * (1 - C) alone exceeds
    15% (the embedded corpus has ~38% facts) nothing is added and the realized ignore
    fraction is reported."""
    call, ignore = lacy_ignorefacts_masks(x)
    extra = max(0, num_calls(x.n, IGNORE_FRACTION) - int(ignore.sum()))
    return call, ignore | top_k_mask(x.token_loss, x.other & ~call, extra)


@dataclass(frozen=True)
class Needs:
    """The labels a method's rule reads besides the model's own loss."""

    facts: bool = False  # spaCy token classes
    judge: bool = False  # LLM-judge labels (`--judge`)
    ref_loss: bool = False  # the reference model's per-token losses (`--ref-losses`)


@dataclass(frozen=True)
class Method:
    """One row of Table 5."""

    name: str
    label: str  # as the paper writes it (plots and tables)
    rule: Callable[[MaskInputs], Masks]
    needs: Needs = field(default_factory=Needs)
    calls: bool = True  # trains toward <CALL>; False: the baseline objective (A.1)
    step_factor: float = 1 / 0.85  # training steps relative to the baseline (A.4.1)

    def masks(self, labels: TokenLabels, token_loss: torch.Tensor | None = None,
              generator: torch.Generator | None = None) -> Masks:
        """(call_mask, ignore_mask), bool (n,), for one micro-batch."""
        return self.rule(MaskInputs(labels, token_loss, generator))


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("baseline", "Baseline", no_masks, calls=False, step_factor=1.0),
        Method("loss_based", "Loss-based calls", loss_based_masks),
        Method("rho1", "Rho-1", rho1_masks, Needs(ref_loss=True)),
        Method("llm_judge", "LLM judge", llm_judge_masks, Needs(judge=True)),
        Method("spacy", "spaCy", spacy_masks, Needs(facts=True)),
        Method("lacy", "LaCy", lacy_masks, Needs(facts=True)),
        Method("spacy_refloss", "spaCy + Refloss", spacy_refloss_masks, Needs(facts=True, ref_loss=True)),
        # "trained 10% / 15% longer" than the calling methods (section 5.4, A.4.1)
        Method("lacy_ignorefacts", "LaCy + Ignorefacts", lacy_ignorefacts_masks, Needs(facts=True), step_factor=1 / 0.85 * 1.10),
        Method("lacy_ignore", "LaCy + Ignore", lacy_ignore_masks, Needs(facts=True), step_factor=1 / 0.85 * 1.15),
    )
}


TRAINING, PROBE = 0, 1  # the streams of `mask_generator`


def mask_generator(seed: int, step: int, index: int, stream: int = TRAINING) -> torch.Generator:
    """The generator of micro-batch `index` of step `step` (random masks, exact on resume).
    `stream` PROBE is the mechanism probe's (`trainer.probe`): a child of the same seed
    sequence under another spawn key, which numpy keeps independent of the training stream."""
    spawn_key = () if stream == TRAINING else (stream,)
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, index], spawn_key=spawn_key).generate_state(1)[0]))


REFERENCE = "reference"  # the reference model's run: the baseline's objective and masks, trained longer


def get_method(name: str) -> Method:
    """A method of Table 5 by name; `reference` trains (and evaluates) as the baseline."""
    if name == REFERENCE:
        return METHODS["baseline"]
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]
