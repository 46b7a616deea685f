"""Worlds of the synthetic testbed and a tokenizer trained on the small one."""

import pytest

from evaluation.testbed.cell import DEFAULT_WORLD
from pipelines.biographies import World, generate_world
from pipelines.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
from tests.evaluation.testbed.worlds import SMALL


@pytest.fixture(scope="session")
def small_world() -> World:
    return generate_world(SMALL)


@pytest.fixture(scope="session")
def default_world() -> World:
    return generate_world(DEFAULT_WORLD)


@pytest.fixture(scope="session")
def world_tokenizer(tmp_path_factory, small_world) -> Tokenizer:
    texts = [d.text for d in small_world.documents] + ["Mary Smith was born on March 3, 1970 in Lyon, France."] * 5
    return Tokenizer(train_tokenizer(texts, tmp_path_factory.mktemp("syn_tok"), TokenizerConfig(vocab_size=400)))
