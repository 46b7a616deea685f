"""A synthetic-biography corpus flows through the data assets: raw_corpus (with its
knowledge base beside it), word labels, tokenizer, token shards and knowledge-base judge labels."""

from dagster import materialize

from assets.data import SHARD_CHECKS, judge_labels_aligned, lmlm_judge_labels, raw_corpus, spacy_word_labels, token_shards, tokenizer
from assets.partitions import shard_partitions
from assets.resources import LacyStorage
from pipelines.biographies import ATTRIBUTES, read_knowledge_base

SOURCE = "embedded:synthetic-bios?people=40&head_people=4&head_documents=6&seed=1"


def test_synthetic_source_through_the_data_assets(tmp_path):
    resources = {"storage": LacyStorage(root=str(tmp_path / "artifacts"))}
    results = [materialize([raw_corpus, tokenizer], resources=resources,
                           run_config={"ops": {"raw_corpus": {"config": {"sources": [SOURCE]}},
                                               "tokenizer": {"config": {"vocab_size": 400}}}})]
    for key in shard_partitions.get_partition_keys():
        results.append(materialize([spacy_word_labels, token_shards, *SHARD_CHECKS], resources=resources, partition_key=key,
                                   run_config={"ops": {"spacy_word_labels": {"config": {"workers": 1}}}}))
    results.append(materialize([lmlm_judge_labels, judge_labels_aligned], resources=resources,
                               run_config={"ops": {"lmlm_judge_labels": {"config": {"annotations": SOURCE}}}}))
    assert all(r.success for r in results)
    metadata = {e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                for r in results for e in r.get_asset_materialization_events()}
    people, _ = read_knowledge_base(tmp_path / "artifacts" / "corpus" / "knowledge_base")
    documents = sum(p["documents"] for p in people)
    assert metadata["raw_corpus"]["documents"] == documents
    assert sum(metadata["raw_corpus"]["knowledge_base_people"].values()) == 40
    judge = metadata["lmlm_judge_labels"]
    assert judge["annotated_documents"] == documents
    assert judge["lookups"] == judge["values_placed"] == documents * len(ATTRIBUTES) and judge["values_unplaced"] == 0
    assert all(c.passed for r in results for c in r.get_asset_check_evaluations())
