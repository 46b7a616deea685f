"""The jobs the Makefile runs, one per stage, in its order (`dagster job execute -j ...`).
A stage starts when the ones before it have finished; the partitioned ones take a partition
flag: `shards_job` a shard range, `evaluation_job` one checkpoint."""

from dagster import AssetSelection, define_asset_job

from assets.data import extra_token_shards, lmlm_judge_labels, raw_corpus, spacy_word_labels, token_shards, tokenizer
from assets.evaluation import knowledge_source
from assets.report import comparison_report
from assets.results import EVALUATION_KEYS
from assets.training import METHOD_MODELS, reference_losses, reference_model

# make run: the data lacy_model needs, then lacy_model
corpus_job = define_asset_job("corpus_job", AssetSelection.assets(raw_corpus, tokenizer))
shards_job = define_asset_job("shards_job", AssetSelection.assets(spacy_word_labels, token_shards))
lacy_job = define_asset_job("lacy_job", AssetSelection.assets(lmlm_judge_labels, "lacy_model"))

# make models: the reference model, its losses, every method of Table 5
reference_job = define_asset_job("reference_job", AssetSelection.assets(extra_token_shards, reference_model))
reference_losses_job = define_asset_job("reference_losses_job", AssetSelection.assets(reference_losses))
methods_job = define_asset_job("methods_job", AssetSelection.assets(*METHOD_MODELS))

# make evaluate: the knowledge source, each checkpoint's evaluations, the report
knowledge_job = define_asset_job("knowledge_job", AssetSelection.assets(knowledge_source))
evaluation_job = define_asset_job("evaluation_job", AssetSelection.assets(*EVALUATION_KEYS))
report_job = define_asset_job("report_job", AssetSelection.assets(comparison_report))

JOBS = [corpus_job, shards_job, lacy_job, reference_job, reference_losses_job, methods_job, knowledge_job, evaluation_job,
        report_job]
