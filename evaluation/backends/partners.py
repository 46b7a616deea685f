"""Cascade partners (A.5): the partner operation of the backend family, given the text so
far, its two highest-scoring next tokens as text (`Partner.top_tokens`), and what the engines
share to compute them: the repetition penalty (HF/CTRL rule, over the partner's own input ids,
row by row), what a local partner's input starts with (`leading_ids`) and the text of a token in
context. The engines are `transformers_backend` (its KV caches in `batched_lm.BatchedLM`),
`vllm_backend` and `openai_backend`; `config.load_backend` picks one.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from trainer.checkpoint import INFO_FILE


def penalize_rows(logits: torch.Tensor, seen_ids: Sequence[Sequence[int]], penalty: float) -> torch.Tensor:
    """HF/CTRL repetition penalty on [rows, vocab] logits: in row r, for every token id in
    `seen_ids[r]` (the ids already in its sequence), a positive logit is divided by
    `penalty`, a negative one multiplied."""
    if penalty == 1.0:
        return logits
    rows = torch.repeat_interleave(torch.arange(len(seen_ids)), torch.tensor([len(ids) for ids in seen_ids]))
    seen = torch.zeros(logits.shape, dtype=torch.bool)
    seen[rows, torch.tensor([i for ids in seen_ids for i in ids], dtype=torch.long)] = True
    seen = seen.to(logits.device)
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


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


def leading_ids(model_dir: str | Path, tokenizer) -> list[int]:
    """What a local partner's input starts with before its tokenizer's ids: our EOS for one
    of our checkpoints (a folder with lacy.json, trained on `EOS d1 EOS d2 ...`, as the small
    model is), nothing for any other model (its tokenizer adds what it was trained with)."""
    return [tokenizer.eos_token_id] if (Path(model_dir) / INFO_FILE).exists() else []


def rank_candidates(logits: torch.Tensor, input_ids: Sequence[Sequence[int]], penalty: float, k: int = 2) -> list[list[int]]:
    """Per row of [rows, vocab] logits, the partner's top-k token ids after the repetition
    penalty over that row's input."""
    return penalize_rows(logits, input_ids, penalty).topk(k).indices.tolist()


