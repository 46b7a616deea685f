"""Text-in, text-out: the judge operation of the backend family, for FactScore's atomic-fact
generator and support judge and the acceptability judge of section 3.

One small interface, `TextLLM.generate(prompts, max_new_tokens, stop) -> list[str]`,
always greedy (FActScore sampled its OpenAI models at temperature 0.7 and cached the
answers; greedy decoding makes our scores reproducible), offered by every engine
(`transformers_backend`, `vllm_backend`, `openai_backend`; `config.load_backend` picks
one). `CachedLLM` wraps any of them with an append-only JSONL cache keyed by the inputs, so
a long run that crashes resumes without recomputing (FActScore keeps a pickle cache for
the same reason).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class TextLLM(Protocol):
    name: str  # identifies the model (and endpoint) in caches and reports

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        """Greedy completions of `prompts`, each cut before the first `stop` string."""
        ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (excluding) the earliest occurrence of any stop string."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


class CachedLLM:
    """Any backend with an append-only JSONL cache keyed by (model, prompt, max_new_tokens,
    stop). Answers are written as soon as each call returns."""

    def __init__(self, llm: TextLLM, path: str | Path):
        self.llm = llm
        self.name = llm.name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, str] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a crash: recompute it
                        continue
                    self._cache[row["key"]] = row["output"]

    def _key(self, prompt: str, max_new_tokens: int, stop: Sequence[str]) -> str:
        blob = json.dumps([self.llm.name, prompt, max_new_tokens, list(stop)])
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _missing(self, keys: Sequence[str]) -> list[int]:
        """The index of the first occurrence of each key not in the cache."""
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self._cache:
                first.setdefault(k, i)
        return list(first.values())

    def calls(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> int:
        """How many prompts `generate` would send to the backend: the distinct ones not cached."""
        return len(self._missing([self._key(p, max_new_tokens, stop) for p in prompts]))

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        keys = [self._key(p, max_new_tokens, stop) for p in prompts]
        missing = self._missing(keys)
        if missing:
            answers = self.llm.generate([prompts[i] for i in missing], max_new_tokens, stop)
            with open(self.path, "a", encoding="utf-8") as f:
                for i, answer in zip(missing, answers):
                    self._cache[keys[i]] = answer
                    f.write(json.dumps({"key": keys[i], "output": answer}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        return [self._cache[k] for k in keys]
