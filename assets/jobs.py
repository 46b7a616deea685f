"""The jobs the Makefile runs, one per stage, in its order (`dagster job execute -j ...`).
A stage starts when the ones before it have finished; the partitioned ones take a partition
flag: `shards_job` a shard range, `evaluation_job` one checkpoint (every evaluation of the
registry)."""

from collections.abc import Sequence

from dagster import AssetsDefinition, AssetSelection, define_asset_job

from assets.data import extra_token_shards, lmlm_judge_labels, raw_corpus, spacy_word_labels, token_shards, tokenizer
from assets.evaluation import knowledge_source
from assets.registry import Evaluation
from assets.training import METHOD_MODELS, reference_losses, reference_model

EVALUATION_JOB = "evaluation_job"


def stage_jobs(evaluations: Sequence[Evaluation], report: AssetsDefinition) -> list:
    """The jobs of `make run`, `make models` and `make evaluate`; `evaluation_job` selects every
    one of `evaluations`."""
    return [
        # make run: the data lacy_model needs, then lacy_model
        define_asset_job("corpus_job", AssetSelection.assets(raw_corpus, tokenizer)),
        define_asset_job("shards_job", AssetSelection.assets(spacy_word_labels, token_shards)),
        define_asset_job("lacy_job", AssetSelection.assets(lmlm_judge_labels, "lacy_model")),
        # make models: the reference model, its losses, every method of Table 5
        define_asset_job("reference_job", AssetSelection.assets(extra_token_shards, reference_model)),
        define_asset_job("reference_losses_job", AssetSelection.assets(reference_losses)),
        define_asset_job("methods_job", AssetSelection.assets(*METHOD_MODELS)),
        # make evaluate: the knowledge source, each checkpoint's evaluations, the report
        define_asset_job("knowledge_job", AssetSelection.assets(knowledge_source)),
        define_asset_job(EVALUATION_JOB, AssetSelection.assets(*(e.key for e in evaluations))),
        define_asset_job("report_job", AssetSelection.assets(report)),
    ]
