"""The data assets materialize in Dagster (in process) on a small corpus, with their
metadata and passing checks."""

import json
import lzma

import pytest
from dagster import materialize

from assets.data import DATA_CHECKS, lmlm_judge_labels, raw_corpus, spacy_word_labels, token_shards, tokenizer
from assets.partitions import shard_partitions
from assets.resources import LacyStorage
from pipelines.corpus import LMLM_FILES


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    root = tmp_path_factory.mktemp("dagster")
    examples = json.load(lzma.open(LMLM_FILES[0], "rt"))["examples"][:16]
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": e["text"]}) + "\n" for e in examples))
    (root / "annotations.jsonl").write_text("".join(json.dumps(e) + "\n" for e in examples))
    return LacyStorage(root=str(root / "artifacts")), root


def metadata(result, asset_name):
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == asset_name][:1]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_data_assets_materialize_with_metadata_and_checks(storage):
    storage, root = storage
    resources = {"storage": storage}
    first = materialize(
        [raw_corpus, tokenizer],
        resources=resources,
        run_config={"ops": {"raw_corpus": {"config": {"sources": [str(root / "docs.jsonl")]}}, "tokenizer": {"config": {"vocab_size": 500}}}},
    )
    assert first.success and metadata(first, "raw_corpus")["documents"] == 16
    for key in shard_partitions.get_partition_keys():
        labels = materialize(
            [spacy_word_labels], resources=resources, partition_key=key,
            run_config={"ops": {"spacy_word_labels": {"config": {"workers": 1}}}},
        )
        assert labels.success
    last = materialize(
        [token_shards, lmlm_judge_labels, *DATA_CHECKS],
        resources=resources,
        selection=["token_shards", "lmlm_judge_labels"],
        run_config={"ops": {"lmlm_judge_labels": {"config": {"annotations": str(root / "annotations.jsonl")}}}},
    )
    assert last.success
    tokens = metadata(last, "token_shards")
    assert tokens["documents"] == 16 and 0.2 < tokens["fact_fraction"] < 0.5
    assert "data:image/png;base64" in tokens["fact_fraction_per_document"]
    judge = metadata(last, "lmlm_judge_labels")
    assert judge["annotated_documents"] == 16 and judge["values_placed"] > 0
    checks = last.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {"token_shards_aligned", "fact_fraction", "judge_labels_aligned"}
    assert all(c.passed for c in checks)
