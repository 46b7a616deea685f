"""Small synthetic datasets in the pipelines' schemas (`trainer.toy_data`): a tiny
SentencePiece model trained on generated sentences, token shards with random classes, judge
labels and reference losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.toy_data import synthetic_docs, synthetic_tokenizer, write_dataset, write_labels


@pytest.fixture(scope="session")
def tokenizer_path(tmp_path_factory) -> Path:
    return synthetic_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, tokenizer_path) -> Path:
    out = tmp_path_factory.mktemp("token_shards")
    write_dataset(out, tokenizer_path, synthetic_docs(tokenizer_path))
    return out


@pytest.fixture(scope="session")
def judge_dir(tmp_path_factory, dataset, tokenizer_path) -> Path:
    rng = np.random.default_rng(1)
    values = {d[0]: (rng.random(len(d[2])) < 0.15).astype(np.int8) for d in synthetic_docs(tokenizer_path)}
    out = tmp_path_factory.mktemp("judge")
    write_labels(out, dataset, "judge_call", values)
    return out


@pytest.fixture(scope="session")
def ref_dir(tmp_path_factory, dataset, tokenizer_path) -> Path:
    rng = np.random.default_rng(2)
    values = {d[0]: (rng.random(len(d[2])) * 6).astype(np.float32) if d[1] == "train" else None
              for d in synthetic_docs(tokenizer_path)}
    out = tmp_path_factory.mktemp("ref_losses")
    write_labels(out, dataset, "ref_loss", values)
    return out


@pytest.fixture(scope="session")
def unlabeled_dataset(tmp_path_factory, tokenizer_path) -> Path:
    out = tmp_path_factory.mktemp("unlabeled")
    write_dataset(out, tokenizer_path, synthetic_docs(tokenizer_path, n=8, seed=7, unlabeled=True), shards=1)
    return out
