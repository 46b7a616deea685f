"""Shared fixtures: one spaCy load and one small tokenizer per test session."""

import pytest

from pipelines.corpus import CorpusConfig, build_corpus
from pipelines.facts import FactLabeler
from pipelines.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer


@pytest.fixture(scope="session")
def labeler() -> FactLabeler:
    return FactLabeler()


@pytest.fixture(scope="session")
def dwiki_texts() -> list[str]:
    table, _ = build_corpus(CorpusConfig())
    return table.column("text").to_pylist()


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory, dwiki_texts) -> Tokenizer:
    path = train_tokenizer(dwiki_texts, tmp_path_factory.mktemp("tokenizer"), TokenizerConfig(vocab_size=2000))
    return Tokenizer(path)


@pytest.fixture(autouse=True, scope="session")
def _offline():
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
