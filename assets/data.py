"""The data-stage assets (section 4, A.2.1, A.2.2): raw_corpus -> spacy_word_labels
(partitioned by shard) -> tokenizer -> token_shards (partitioned by shard) -> lmlm_judge_labels."""

import os
import time
import warnings

import numpy as np
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    asset,
    asset_check,
)

from assets.metadata import md_png, md_table
from assets.partitions import NUM_SHARDS, shard_backfill, shard_partitions
from assets.resources import LacyStorage
from evaluation.report.figures import plt, save_figure
from pipelines import align, corpus, facts, judge, word_labels
from pipelines import biographies as synthetic
from pipelines import token_shards as token_shards_module
from pipelines import tokenizer as tokenizer_module
from pipelines.classes import CLASS_NAMES
from pipelines.corpus import CorpusConfig, read_corpus_shard, write_corpus
from pipelines.facts import DEFAULT_SPACY_MODEL, ORG_KEYWORDS, RULES, LabelerConfig
from pipelines.files import code_fingerprint, read_json
from pipelines.judge import build_judge_labels
from pipelines.presets import data_preset
from pipelines.shards import MANIFEST, file_metadata, shard_name
from pipelines.token_shards import LENGTH_BUCKETS, build_token_shards, tokenize_shards, verify_shard, write_manifest
from pipelines.tokenizer import MODEL_FILE, Tokenizer, TokenizerConfig, tokenizer_summary, train_tokenizer
from pipelines.word_labels import label_shards

# Partitioned asset checks (token_shards' checks run in the runs of its shards) are a preview in
# Dagster 1.13: it warns at every import of the definitions. Only that warning is silenced.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=PreviewWarning)

PAPER_FACT_FRACTION = 0.25  # section 4: "Our spaCy annotation alone assigns a fact label to 25% of tokens"


class RawCorpusConfig(Config):
    sources: list[str] = ["embedded:dwiki"]
    validation_fraction: float = 0.1
    min_stopword_fraction: float = 0.08


@asset(group_name="data", code_version=code_fingerprint(corpus, synthetic))
def raw_corpus(context: AssetExecutionContext, config: RawCorpusConfig, storage: LacyStorage) -> MaterializeResult:
    """Documents with stable doc_id, title, text, source and a deterministic 90/10 split, in corpus shards."""
    corpus_config = CorpusConfig(tuple(config.sources), config.validation_fraction, config.min_stopword_fraction)
    manifest = write_corpus(corpus_config, storage.path("corpus"), NUM_SHARDS, context.log.info)
    buckets = synthetic.write_beside_corpus(config.sources, storage.path("corpus"), config.validation_fraction)
    context.log.info(f"{manifest['documents']} documents, skipped {manifest['skipped'] or 'none'}")
    titles = read_corpus_shard(storage.path("corpus"), 0, ["title"]).column("title").to_pylist()[:8]
    return MaterializeResult(
        metadata={
            "documents": manifest["documents"],
            "characters": manifest["characters"],
            "documents_per_source": MetadataValue.json(manifest["documents_per_source"]),
            "splits": MetadataValue.json(manifest["splits"]),
            "skipped": MetadataValue.json(manifest["skipped"]),
            "num_shards": NUM_SHARDS,
            "fingerprint": manifest["fingerprint"],
            "path": MetadataValue.path(str(storage.path("corpus"))),
            "first_titles": MetadataValue.md("\n".join(f"- {t}" for t in titles)),
            **({"knowledge_base_people": MetadataValue.json(buckets)} if buckets else {}),
        },
    )


class WordLabelsConfig(Config):
    spacy_model: str = DEFAULT_SPACY_MODEL
    batch_size: int = 64
    org_keywords: list[str] = list(ORG_KEYWORDS)  # PAPER_ORG_KEYWORDS: the three the paper names
    org_leading_the: bool = True  # a chunk with a leading "the" is likely an ORG (A.2.1)
    workers: int = max(1, os.cpu_count() or 1)


@asset(
    group_name="data",
    deps=[raw_corpus],
    partitions_def=shard_partitions,
    backfill_policy=shard_backfill,
    code_version=code_fingerprint(facts, word_labels),
)
def spacy_word_labels(context: AssetExecutionContext, config: WordLabelsConfig, storage: LacyStorage) -> MaterializeResult:
    """Every word classified fact / grammatical / other by the A.2.1 rules, with the deciding
    rule. A run over several shards labels them in parallel worker processes."""
    shards = [int(k) for k in context.partition_keys]
    labeler_config = LabelerConfig(
        spacy_model=config.spacy_model, batch_size=config.batch_size,
        org_keywords=tuple(config.org_keywords), org_leading_the=config.org_leading_the,
    )
    stats = label_shards(storage.path("corpus"), shards, storage.path("spacy_word_labels"), labeler_config, config.workers, context.log.info)
    words = sum(s["words"] for s in stats)
    classes = {name: sum(s["classes"][name] for s in stats) for name in CLASS_NAMES}
    rules = {name: sum(s["rules"][name] for s in stats) for name in RULES}
    seconds = sum(s["seconds"] for s in stats)
    return MaterializeResult(
        metadata={
            "shards": MetadataValue.json(shards),
            "documents": sum(s["docs"] for s in stats),
            "words": words,
            "word_fractions": MetadataValue.json({k: round(v / max(words, 1), 4) for k, v in classes.items()}),
            "rules": md_table([{"rule": r, "words": n, "fraction": n / max(words, 1)} for r, n in rules.items() if n]),
            "words_per_second_per_worker": round(words / max(seconds, 1e-9), 1),
            "per_shard": md_table([{k: s[k] for k in ("shard", "docs", "words", "seconds", "fingerprint")} for s in stats]),
        }
    )


class TokenizerAssetConfig(Config):
    vocab_size: int = data_preset().vocab_size
    model_type: str = "bpe"


@asset(group_name="data", deps=[raw_corpus], code_version=code_fingerprint(tokenizer_module))
def tokenizer(context: AssetExecutionContext, config: TokenizerAssetConfig, storage: LacyStorage) -> MaterializeResult:
    """SentencePiece BPE (digits split, byte fallback) on the train split, <CALL> as the last id."""
    corpus_dir = storage.path("corpus")
    shards = read_json(corpus_dir / MANIFEST)["num_shards"]
    def train_texts():
        for k in range(shards):
            part = read_corpus_shard(corpus_dir, k, ["text", "split"])
            yield from (t for t, s in zip(part.column("text").to_pylist(), part.column("split").to_pylist()) if s == "train")

    tok_config = TokenizerConfig(vocab_size=config.vocab_size, model_type=config.model_type)
    path = train_tokenizer(train_texts(), storage.path("tokenizer"), tok_config)
    tok = Tokenizer(path)
    example = "Napoleon was born on August 15, 1769."
    pieces = [tok.piece(i) for i in tok.encode(example)]
    context.log.info(f"{tok.vocab_size} pieces, <CALL> = {tok.call_id}")
    return MaterializeResult(
        metadata={
            **{k: v for k, v in tokenizer_summary(tok, tok_config).items() if isinstance(v, int | float | str)},
            "path": MetadataValue.path(str(path)),
            "example": MetadataValue.md(f"`{example}` → " + " ".join(f"`{p}`" for p in pieces)),
        }
    )


@asset(
    group_name="data",
    deps=[spacy_word_labels, tokenizer],
    partitions_def=shard_partitions,
    backfill_policy=shard_backfill,
    code_version=code_fingerprint(align, token_shards_module),
)
def token_shards(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """Parquet shards of input_ids with each token's class inherited from its word. The run
    that completes the last current shard writes the manifest the trainer reads."""
    t0 = time.perf_counter()
    shards = [int(k) for k in context.partition_keys]
    inputs = (storage.path("corpus"), storage.path("spacy_word_labels"), storage.path("tokenizer", MODEL_FILE))
    stats = tokenize_shards(*inputs, storage.path("token_shards"), shards, context.log.info)
    manifest = write_manifest(*inputs, storage.path("token_shards"))
    tokens = sum(s["tokens"] for s in stats)
    metadata = {
        "shards": MetadataValue.json(shards),
        "shard_documents": sum(s["docs"] for s in stats),
        "shard_tokens": tokens,
        "shard_fact_fraction": round(sum(s["classes"]["fact"] for s in stats) / max(tokens, 1), 4),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if isinstance(manifest, list):
        context.log.info(f"the manifest waits on shards {manifest}")
        return MaterializeResult(metadata={**metadata, "waiting_on_shards": MetadataValue.json(manifest)})
    return MaterializeResult(metadata={**metadata, **_token_dataset_metadata(manifest, storage)})


def _token_dataset_metadata(manifest: dict, storage: LacyStorage) -> dict:
    """The whole dataset's counts and plots, once its manifest is written."""
    tokens = manifest["tokens"]
    fractions = {k: v / max(tokens, 1) for k, v in manifest["classes"].items()}
    return {
        "documents": manifest["docs"],
        "tokens": tokens,
        "tokens_per_split": MetadataValue.json(manifest["tokens_per_split"]),
        "fact_fraction": round(manifest["fact_fraction"], 4),
        "paper_fact_fraction": PAPER_FACT_FRACTION,
        "token_fractions": MetadataValue.json({k: round(v, 4) for k, v in fractions.items()}),
        "fact_fraction_by_document_length": md_table(
            [{"document tokens": b, **manifest["fact_fraction_by_length"][b]} for b in LENGTH_BUCKETS if b in manifest["fact_fraction_by_length"]]
        ),
        "median_document_tokens": float(np.median(_document_lengths(storage))),
        "fact_fraction_per_document": _fact_fraction_plot(storage),
        "fingerprint": manifest["fingerprint"],
        "path": MetadataValue.path(str(storage.path("token_shards"))),
    }


def _document_lengths(storage: LacyStorage) -> np.ndarray:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = [storage.path("token_shards", e["file"]) for e in read_json(storage.path("token_shards", MANIFEST))["shards"]]
    return np.concatenate([pc.list_value_length(pq.read_table(f, columns=["input_ids"]).column("input_ids")).to_numpy() for f in files])


def _fact_fraction_plot(storage: LacyStorage) -> MetadataValue:
    import pyarrow.parquet as pq

    fractions = []
    for entry in read_json(storage.path("token_shards", MANIFEST))["shards"]:
        column = pq.read_table(storage.path("token_shards", entry["file"]), columns=["token_class"]).column("token_class")
        fractions += [float(np.mean(np.asarray(row) == 2)) if row else 0.0 for row in column.to_pylist()]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.hist(fractions, bins=40, color="#4a7ab5")
    ax.axvline(PAPER_FACT_FRACTION, color="k", linestyle="--", label="paper: 25% of tokens")
    ax.set_xlabel("fraction of a document's tokens labelled fact")
    ax.set_ylabel("documents")
    ax.legend()
    return md_png(save_figure(fig, storage.path("token_shards", "fact_fraction_per_document.png")))


@asset_check(asset=token_shards, partitions_def=shard_partitions, blocking=True)  # a failure stops the run's downstream steps
def token_shards_aligned(context: AssetCheckExecutionContext, storage: LacyStorage) -> AssetCheckResult:
    """The run's shards: input_ids and token_class have equal lengths; ids are text ids (never
    <CALL>); tokens decode back to each document exactly."""
    tok = Tokenizer(storage.path("tokenizer", MODEL_FILE))
    rows = tokens = not_round_tripping = 0
    for k in (int(key) for key in context.partition_keys):
        result = verify_shard(storage.path("token_shards", shard_name(k)), tok, storage.path("corpus"), k)
        rows, tokens = rows + result["rows"], tokens + result["tokens"]
        not_round_tripping += result["docs_not_round_tripping"]
    return AssetCheckResult(
        passed=not_round_tripping == 0,
        metadata={"documents": rows, "tokens": tokens, "documents_not_covered": not_round_tripping},
    )


@asset_check(asset=token_shards, partitions_def=shard_partitions)
def fact_fraction(context: AssetCheckExecutionContext, storage: LacyStorage) -> AssetCheckResult:
    """Reports the fraction of the run's shards' tokens labelled fact (the paper reports about
    25% on dwiki); warns outside 10-50%."""
    stats = [file_metadata(storage.path("token_shards", shard_name(int(k)))) for k in context.partition_keys]
    value = sum(s["classes"]["fact"] for s in stats) / max(sum(s["tokens"] for s in stats), 1)
    return AssetCheckResult(
        passed=0.10 <= value <= 0.50,
        severity=AssetCheckSeverity.WARN,
        metadata={"fact_fraction": round(value, 4), "paper": PAPER_FACT_FRACTION},
    )


class JudgeLabelsConfig(Config):
    annotations: str = "embedded:dwiki"  # or a path to LMLM-format JSON / JSONL with text + annotated_text


@asset(group_name="data", deps=[token_shards], code_version=code_fingerprint(judge))
def lmlm_judge_labels(context: AssetExecutionContext, config: JudgeLabelsConfig, storage: LacyStorage) -> MaterializeResult:
    """LMLM's LLM-judge annotations converted per A.2.2 into per-token judge_call labels on the
    same input_ids."""
    manifest = build_judge_labels(storage.path("corpus"), storage.path("token_shards"), storage.path("lmlm_judge_labels"), config.annotations, context.log.info)
    return MaterializeResult(
        metadata={
            "annotated_documents": manifest["annotated_docs"],
            "documents": manifest["docs"],
            "lookups": manifest["lookups"],
            "values_placed": manifest["placed"],
            "values_unplaced": manifest["unplaced"],
            "words_unaligned": manifest["words_unaligned"],
            "unplaced_examples": md_table(manifest["unplaced_examples"][:15]),
            "judge_call_fraction": round(manifest["judge_call_fraction"], 4),
            "agreement_with_spacy_facts": MetadataValue.json({k: round(v, 4) for k, v in manifest["agreement_with_spacy_facts"].items()}),
            "fingerprint": manifest["fingerprint"],
            "path": MetadataValue.path(str(storage.path("lmlm_judge_labels"))),
        }
    )


@asset_check(asset=lmlm_judge_labels, blocking=True)
def judge_labels_aligned(storage: LacyStorage) -> AssetCheckResult:
    """judge_call has one label per input_id in every annotated document."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    mismatched = 0
    for entry in read_json(storage.path("lmlm_judge_labels", MANIFEST))["shards"]:
        judge = pq.read_table(storage.path("lmlm_judge_labels", entry["file"])).column("judge_call")
        ids = pq.read_table(storage.path("token_shards", entry["file"]), columns=["input_ids"]).column("input_ids")
        annotated = pc.is_valid(judge)
        lengths = pc.list_value_length(judge.filter(annotated))
        expected = pc.list_value_length(ids.filter(annotated))
        mismatched += int(pc.sum(pc.not_equal(lengths, expected)).as_py() or 0)
    return AssetCheckResult(passed=mismatched == 0, metadata={"documents_with_mismatched_lengths": mismatched})


class ExtraTokenShardsConfig(Config):
    sources: list[str] = ["embedded:wikipedia-leads"]


@asset(
    group_name="data",
    deps=[tokenizer],
    code_version=code_fingerprint(corpus, token_shards_module),
)
def extra_token_shards(context: AssetExecutionContext, config: ExtraTokenShardsConfig, storage: LacyStorage) -> MaterializeResult:
    """Extra text for the reference model (the 10k Wikipedia lead sections by default),
    tokenized with the corpus tokenizer and unlabeled: the paper's reference model is trained
    longer on more data."""
    corpus_config = CorpusConfig(tuple(config.sources))
    corpus = write_corpus(corpus_config, storage.path("extra_corpus"), NUM_SHARDS, context.log.info)
    manifest = build_token_shards(storage.path("extra_corpus"), None, storage.path("tokenizer", MODEL_FILE), storage.path("extra_token_shards"), context.log.info)
    return MaterializeResult(
        metadata={
            "documents": manifest["docs"],
            "skipped": MetadataValue.json(corpus["skipped"]),
            "tokens": manifest["tokens"],
            "tokens_per_split": MetadataValue.json(manifest["tokens_per_split"]),
            "fingerprint": manifest["fingerprint"],
            "path": MetadataValue.path(str(storage.path("extra_token_shards"))),
        }
    )


DATA_ASSETS = [raw_corpus, spacy_word_labels, tokenizer, token_shards, lmlm_judge_labels, extra_token_shards]
SHARD_CHECKS = [token_shards_aligned, fact_fraction]  # partitioned as token_shards: in the runs of its shards
DATA_CHECKS = [*SHARD_CHECKS, judge_labels_aligned]
