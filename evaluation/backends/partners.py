"""Cascade partners (A.5): the partner operation of the backend family, given the text so
far, its two highest-scoring next tokens as text (`Partner.top_tokens`), and what the
engines share to compute them: the repetition penalty (HF/CTRL rule, over the partner's own
input ids), the KV cache per sequence of a local model (`CachedLM`) and the text of a token
in context. The engines are `transformers_backend`, `vllm_backend` and `openai_backend`;
`config.load_backend` picks one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from transformers import PreTrainedModel


def repetition_penalty(logits: torch.Tensor, seen_ids: Sequence[int] | torch.Tensor, penalty: float) -> torch.Tensor:
    """HF/CTRL repetition penalty on a [vocab] logit vector: for every token id already in
    the sequence, a positive logit is divided by `penalty`, a negative one multiplied."""
    if penalty == 1.0:
        return logits
    seen = torch.as_tensor(seen_ids, dtype=torch.long, device=logits.device).unique()
    out = logits.clone()
    picked = out[seen]
    out[seen] = torch.where(picked < 0, picked * penalty, picked / penalty)
    return out


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


class CachedLM:
    """A causal LM that keeps, per sequence key, the keys/values of the token ids it has
    read. Given a sequence's ids it rolls its cache back to the longest common prefix with
    what it holds and reads only the rest (at least the last token, whose logits are
    needed). With `reuse_cache=False` it re-reads every sequence whole: the reference the
    cached path must agree with, and the benchmark's baseline."""

    def __init__(self, model: PreTrainedModel, reuse_cache: bool = True):
        self.model = model
        self.reuse_cache = reuse_cache
        self._held: dict[Hashable, tuple[list[int], object]] = {}

    @torch.no_grad()
    def logits(self, key: Hashable, ids: Sequence[int]) -> tuple[torch.Tensor, int]:
        """Logits [new positions, vocab] of the positions read, and how many were read."""
        if not ids:
            raise ValueError("empty input")
        held_ids, cache = self._held.get(key, ([], None))
        start = min(common_prefix(held_ids, ids), len(ids) - 1) if self.reuse_cache else 0
        if start == 0:
            cache = None
        elif start < cache.get_seq_length():
            cache.crop(start)
        device = self.model.device
        out = self.model(input_ids=torch.tensor([list(ids[start:])], device=device), past_key_values=cache,
                         use_cache=self.reuse_cache)
        if self.reuse_cache:
            self._held[key] = (list(ids), out.past_key_values)
        return out.logits[0].float(), len(ids) - start

    def release(self, key: Hashable) -> None:
        self._held.pop(key, None)


@dataclass(frozen=True)
class PartnerQuery:
    key: Hashable  # one per generated sequence: the partner may keep a cache per key
    text: str  # the partner's whole input: its prefix (e.g. the RAG prompt) + the text so far


@dataclass(frozen=True)
class PartnerReply:
    candidates: tuple[str, ...]  # text of the partner's top tokens as a continuation, best first
    tokens_processed: int  # partner input tokens read (not served from a cache) for this call


class Partner(Protocol):
    """A cascade partner: for each query, its two highest-scoring next tokens."""

    name: str

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]: ...

    def release(self, key: Hashable) -> None: ...


def continuation_text(tokenizer, context_ids: Sequence[int], token_id: int, window: int = 8) -> str:
    """The text `token_id` adds after `context_ids` (spaces included, as the partner's
    tokenizer decodes it in context); "" for special tokens and undecodable pieces."""
    if token_id in set(tokenizer.all_special_ids):
        return ""
    tail = list(context_ids[-window:])
    kwargs = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}
    before = tokenizer.decode(tail, **kwargs)
    after = tokenizer.decode(tail + [int(token_id)], **kwargs)
    return after[len(before):] if after.startswith(before) else ""


def rank_candidates(logits: torch.Tensor, input_ids: Sequence[int], penalty: float, k: int = 2) -> list[int]:
    """The partner's top-k token ids after the repetition penalty over its input."""
    return repetition_penalty(logits, input_ids, penalty).topk(k).indices.tolist()
