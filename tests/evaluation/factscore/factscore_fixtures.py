"""Shared helpers for the FactScore and knowledge-source tests: test doubles for the LLM
interface (never used for reported numbers) and small knowledge sources."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from evaluation.factscore.knowledge import KnowledgeSource, build_knowledge_db


class ScriptedLLM:
    """Test double for `TextLLM`: answers each prompt with `answer(prompt)` and records
    every call."""

    def __init__(self, answer: Callable[[str], str], name: str = "scripted-test-double"):
        self.answer = answer
        self.name = name
        self.calls: list[tuple[list[str], int, tuple[str, ...]]] = []

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        self.calls.append((list(prompts), max_new_tokens, tuple(stop)))
        return [self.answer(p) for p in prompts]

    @property
    def prompts(self) -> list[str]:
        return [p for call in self.calls for p in call[0]]


@lru_cache(maxsize=1)
def spacy_nlp():
    from pipelines.facts import load_spacy

    return load_spacy()


EARL = (
    "Ralph Earl\n\n"
    "Ralph Earl (May 11, 1751 – August 16, 1801) was an American painter known for his portraits.\n"
    "Early life.\n"
    "Ralph Earl was born in Shrewsbury, Massachusetts. By 1774 he was working in New Haven, Connecticut.\n"
    "Career.\n"
    "He painted a panorama of Niagara Falls and died in Bolton, Connecticut."
)
CURIE = (
    "Marie Curie\n\n"
    "Marie Curie (7 November 1867 – 4 July 1934) was a Polish and naturalised-French physicist and chemist.\n"
    "She won the Nobel Prize in Physics in 1903 and the Nobel Prize in Chemistry in 1911."
)


def small_knowledge(tmp_path: Path, max_tokens: int = 256) -> KnowledgeSource:
    path = tmp_path / "knowledge.db"
    build_knowledge_db(path, [("Ralph Earl", EARL), ("Marie Curie", CURIE)], max_tokens=max_tokens)
    return KnowledgeSource(path)
