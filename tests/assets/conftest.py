"""The data assets materialized once per session (in process) on 16 real dwiki articles;
the model and evaluation tests build on them."""

import json
import lzma
import shutil

import pytest
from dagster import materialize

from assets.data import (
    SHARD_CHECKS,
    extra_token_shards,
    judge_labels_aligned,
    lmlm_judge_labels,
    raw_corpus,
    spacy_word_labels,
    token_shards,
    tokenizer,
)
from assets.partitions import shard_partitions
from assets.resources import LacyStorage
from pipelines.corpus import LMLM_FILES


@pytest.fixture(scope="session")
def data_assets(tmp_path_factory):
    """(storage, root, {asset name: materialization metadata}, check evaluations)."""
    root = tmp_path_factory.mktemp("dagster")
    examples = json.load(lzma.open(LMLM_FILES[0], "rt"))["examples"][:16]
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": e["text"]}) + "\n" for e in examples))
    (root / "annotations.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    storage = LacyStorage(root=str(root / "artifacts"))
    resources = {"storage": storage}
    results = [
        materialize(
            [raw_corpus, tokenizer],
            resources=resources,
            run_config={"ops": {"raw_corpus": {"config": {"sources": [str(root / "docs.jsonl")]}}, "tokenizer": {"config": {"vocab_size": 500}}}},
        )
    ]
    for key in shard_partitions.get_partition_keys():
        results.append(materialize([spacy_word_labels, token_shards, *SHARD_CHECKS], resources=resources, partition_key=key,
                                   run_config={"ops": {"spacy_word_labels": {"config": {"workers": 1}}}}))
    checks = [c for r in results for c in r.get_asset_check_evaluations()]
    results.append(
        materialize(
            [lmlm_judge_labels, extra_token_shards, judge_labels_aligned],
            resources=resources,
            selection=["lmlm_judge_labels", "extra_token_shards"],
            run_config={"ops": {"lmlm_judge_labels": {"config": {"annotations": str(root / "annotations.jsonl")}},
                                "extra_token_shards": {"config": {"sources": [str(root / "docs.jsonl")]}}}},
        )
    )
    assert all(r.success for r in results)
    metadata = {
        e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
        for r in results
        for e in r.get_asset_materialization_events()
    }
    return storage, root, metadata, checks + results[-1].get_asset_check_evaluations()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(storage root, partition key): a tiny token dataset (`token_shards/`, 4 validation
    documents) and a random checkpoint of its tokenizer as the latest `baseline` model
    (`models/baseline/run-1/step-00000001`), for the evaluation assets' tests."""
    from evaluation.checkpoint import write_random_checkpoint
    from pipelines.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer
    from tests.evaluation.conftest import REPEATED, SENTENCES, write_token_dataset

    root = tmp_path_factory.mktemp("tiny") / "artifacts"
    tokenizer = train_tokenizer(SENTENCES * 20 + [REPEATED] * 20, tmp_path_factory.mktemp("tokenizer"), TokenizerConfig(vocab_size=400))
    docs = [(s, "validation" if i % 3 == 1 else "train") for i, s in enumerate(SENTENCES)]
    write_token_dataset(root / "token_shards", Tokenizer(tokenizer), docs)
    key = "baseline/run-1/step-00000001"
    write_random_checkpoint(root / "models" / key, tokenizer, seed=0, method="baseline", n_positions=1024)  # fits 3-shot prompts
    (root / "models" / "baseline" / "latest.json").write_text(
        json.dumps({"run_dir": "models/baseline/run-1", "checkpoint": f"models/{key}"}))
    return root, key


@pytest.fixture
def tiny_storage(tiny_models, tmp_path):
    """(storage, partition key): a copy of `tiny_models` of the test's own."""
    root, key = tiny_models
    shutil.copytree(root, tmp_path / "artifacts")
    return LacyStorage(root=str(tmp_path / "artifacts")), key
