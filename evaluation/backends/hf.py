"""Hugging Face model directories as every local engine (transformers, vLLM) reads them: the
tokenizer, the context length (one lookup for judges and partners) and the rule for inputs
longer than the context (keep the last tokens, as FActScore's `factscore/clm.py` does)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# the config fields that hold a model's context, in the order they are looked up
CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def context_length(config: Any) -> int | None:
    """The model's context in tokens: the first positive integer among `CONTEXT_FIELDS` of its
    config; None when it names none (no limit is applied)."""
    for name in CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def read_context_length(model_dir: str | Path) -> int | None:
    """`context_length` of the config.json in `model_dir`."""
    from transformers import AutoConfig

    return context_length(AutoConfig.from_pretrained(model_dir, trust_remote_code=False, local_files_only=True))


def load_tokenizer(model_dir: str | Path) -> Any:
    """The model directory's own tokenizer (never remote code, never the network)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False, local_files_only=True)


def last_tokens(ids: Sequence[int], limit: int | None) -> list[int]:
    """The last `limit` ids (all of them when `limit` is None)."""
    if limit is not None and limit < 1:
        raise ValueError(f"an input must keep at least one token, got a limit of {limit}")
    return list(ids if limit is None else ids[-limit:])


def encode_prompt(tokenizer: Any, prompt: str, chat: bool, max_input_tokens: int | None) -> list[int]:
    """Token ids of `prompt` (as the single user message of the model's chat template when
    `chat`), keeping the last `max_input_tokens` ids when it is longer (FActScore clm.py)."""
    if chat:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt)["input_ids"]
    return last_tokens(ids, max_input_tokens)
