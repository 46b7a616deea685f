"""Evaluation assets, one partition per checkpoint (dynamic partitions keyed by the
checkpoint's path under the models root): validation losses (A.4.3), cascade generations
(A.5), FactScore or its lexical proxy (App. B), fact leakage (5.3) and NLU (Table 1).
Each writes `artifacts/evaluation/<partition>/<asset>.json` with an `inputs_fingerprint`
(evaluation code + data + checkpoint) that the re-evaluation schedule compares."""

import os
from functools import cache
from pathlib import Path

import torch
from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.data import token_shards
from assets.metadata import md_table
from assets.resources import LacyStorage
from assets.training import latest_run
from evaluation import atomic_facts, cascade, checkpoint, entities, fact_overlap, knowledge, leakage, llm_backends, nlu, validation
from evaluation import factscore as factscore_lib
from evaluation.cascade import CascadeConfig, generate, make_partner, rag_prefix, render, summarize
from evaluation.checkpoint import checkpoint_fingerprint, load_checkpoint
from evaluation.entities import bio_generation, build_embedded_knowledge, entity_prompts
from evaluation.fact_overlap import fact_overlap_proxy
from evaluation.factscore import FactScoreConfig
from evaluation.knowledge import KnowledgeSource
from evaluation.leakage import LeakageConfig, evaluate_leakage
from evaluation.nlu import NLU_DIR, evaluate_nlu
from evaluation.validation import ValidationConfig, evaluate_validation
from pipelines.files import code_fingerprint, file_sha256, fingerprint, read_json, write_json
from trainer.presets import REFERENCE

checkpoint_partitions = DynamicPartitionsDefinition(name="checkpoints")

# the code and data each evaluation depends on: a change makes its results stale
EVALUATION_INPUTS = {
    "validation_losses": ((validation, checkpoint), ()),
    "cascade_generations": ((cascade, entities, checkpoint), ()),
    "factscore": ((factscore_lib, atomic_facts, fact_overlap, knowledge, llm_backends, entities), ()),
    "fact_leakage": ((leakage, checkpoint), (leakage.POPQA_FILE, leakage.BIGBENCH_FILE)),
    "nlu": ((nlu, checkpoint), tuple(sorted(Path(NLU_DIR).rglob("*.xz")))),
}


@cache
def _data_sha(path: Path) -> str:
    return file_sha256(path)


def inputs_fingerprint(name: str, checkpoint_sha: str) -> str:
    """`checkpoint_sha`: `checkpoint_fingerprint` of the evaluated checkpoint (hashing the
    weights once serves every evaluation of it)."""
    modules, files = EVALUATION_INPUTS[name]
    return fingerprint(code_fingerprint(*modules), [_data_sha(Path(f)) for f in files], checkpoint_sha)


def evaluation_asset(name: str, description: str, **kwargs):
    """The decorator of a per-checkpoint evaluation: partitioned by checkpoint, in the `gpu`
    pool, its code version the fingerprint of the modules it depends on."""
    return asset(name=name, group_name="evaluation", partitions_def=checkpoint_partitions, pool="gpu",
                 code_version=code_fingerprint(*EVALUATION_INPUTS[name][0]), description=description, **kwargs)


def checkpoint_dir(storage: LacyStorage, partition_key: str) -> Path:
    return storage.path("models", partition_key)


def result_path(storage: LacyStorage, partition_key: str, name: str) -> Path:
    return storage.path("evaluation", partition_key, f"{name}.json")


def read_result(storage: LacyStorage, partition_key: str, name: str) -> dict | None:
    path = result_path(storage, partition_key, name)
    return read_json(path) if path.exists() else None


# the parts of an evaluation's result that record where something lies: relative to the storage root
RECORDED_PATHS = ("checkpoint", "baseline_checkpoint", "dataset")


def _save(context: AssetExecutionContext, storage: LacyStorage, name: str, result: dict) -> Path:
    ckpt = checkpoint_dir(storage, context.partition_key)
    result = {**result, **{k: {**result[k], "path": storage.ref(result[k]["path"])} for k in RECORDED_PATHS if k in result}}
    result = {**result, "inputs_fingerprint": inputs_fingerprint(name, checkpoint_fingerprint(ckpt)), "partition": context.partition_key}
    path = result_path(storage, context.partition_key, name)
    write_json(path, result)
    return path


def _cpu_threads() -> None:
    # Evaluations of tiny models run fastest on one thread each (two run side by side).
    if not torch.cuda.is_available():
        torch.set_num_threads(int(os.environ.get("LACY_EVAL_THREADS", "1")))


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def latest_checkpoint_of(storage: LacyStorage, name: str) -> str | None:
    try:
        return latest_run(storage, name)["checkpoint"]
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- validation losses


class ValidationLossesConfig(Config):
    max_tokens: int | None = None  # the first N validation tokens (None: all)
    batch_size: int = 8
    baseline: str = ""  # a baseline checkpoint for the matched losses; "" = the latest baseline_model


@evaluation_asset(
    "validation_losses",
    "A.4.3: call, non-call and total validation loss with the 15% call-mask decoding rule, and the "
    "baseline's losses on the same call mask (Figure 5).",
    deps=[token_shards],
)
def validation_losses(context: AssetExecutionContext, config: ValidationLossesConfig, storage: LacyStorage) -> MaterializeResult:
    _cpu_threads()
    ckpt = checkpoint_dir(storage, context.partition_key)
    baseline = config.baseline or latest_checkpoint_of(storage, "baseline")
    if baseline and Path(baseline).resolve() == ckpt.resolve():
        baseline = None
    result = evaluate_validation(
        ckpt, storage.path("token_shards"), baseline, ValidationConfig(batch_size=config.batch_size, max_tokens=config.max_tokens), context.log.info
    )
    path = _save(context, storage, "validation_losses", result)
    keys = ("call_loss", "non_call_loss", "total_loss", "call_fraction", "baseline_call_loss", "baseline_non_call_loss", "baseline_total_loss")
    return MaterializeResult(
        metadata={
            **{k: round(result[k], 4) for k in keys if result.get(k) is not None},
            "tokens": result["tokens"],
            "baseline_checkpoint": MetadataValue.path(str(baseline)) if baseline else "none",
            "result": MetadataValue.path(str(path)),
        }
    )


# ---------------------------------------------------------------- cascade


class CascadeGenerationsConfig(Config):
    partner: str = ""  # a local HF causal LM directory; "" = the latest reference_model checkpoint
    backend: str = "transformers"  # or "vllm" (GPU)
    entities: str = "embedded"  # "embedded" (dwiki people) or "paper" (FActScore's 183)
    split: str = "train"  # embedded people of this split (their articles are in the pretraining data, as in the paper)
    limit: int | None = 40  # the first N entities (CPU); None = all
    max_new_tokens: int = 256
    target_call_rate: float = 0.15
    rag: bool = False  # A.5's RAG prompt for the partner, with the entity's article (embedded only)


@evaluation_asset(
    "cascade_generations",
    "A.5: biographies by the model in a cascade with its partner (greedy, 256 tokens, repetition "
    "penalty 1.2, calls calibrated by a running threshold), with the call rate and partner cost.",
)
def cascade_generations(context: AssetExecutionContext, config: CascadeGenerationsConfig, storage: LacyStorage) -> MaterializeResult:
    _cpu_threads()
    ckpt = checkpoint_dir(storage, context.partition_key)
    partner_dir = config.partner or latest_checkpoint_of(storage, REFERENCE)
    if not partner_dir:
        raise FileNotFoundError("no cascade partner: materialize reference_model or set config.partner to a local HF model directory")
    rows = entity_prompts(config.entities, config.split)[: config.limit]
    small = load_checkpoint(ckpt, _device())
    partner = make_partner(config.backend, partner_dir, **({"device": _device()} if config.backend == "transformers" else {}))
    prefixes = None
    if config.rag:
        articles = {p["title"]: p["text"] for p in entities.embedded_people("all")}
        prefixes = [rag_prefix(entity, articles.get(title)) for entity, _, title in rows]
    gens = generate(
        small,
        [prompt for _, prompt, _ in rows],
        partner,
        CascadeConfig(max_new_tokens=config.max_new_tokens, target_call_rate=config.target_call_rate),
        prefixes,
        context.log.info,
    )
    stats = summarize(gens)
    result = {
        "checkpoint": small.identity(),
        "partner": storage.ref(partner_dir),
        "config": config.model_dump(),
        "summary": stats,
        "generations": [{"entity": e, "title": t, **g.to_dict()} for (e, _, t), g in zip(rows, gens)],
    }
    path = _save(context, storage, "cascade_generations", result)
    return MaterializeResult(
        metadata={
            "generations": len(gens),
            "realized_call_rate": round(stats["call_rate"], 4),
            "partner_token_fraction": round(stats["partner_token_fraction"], 4),
            "mean_partner_tokens_per_call": round(stats["mean_partner_tokens_per_call"], 2),
            "partner": MetadataValue.path(str(partner_dir)),
            "examples": MetadataValue.md("\n\n".join(f"**{e}**: {render(g, color=False)}" for (e, _, _), g in list(zip(rows, gens))[:3])),
            "result": MetadataValue.path(str(path)),
        }
    )


# ---------------------------------------------------------------- FactScore


class KnowledgeSourceConfig(Config):
    path: str = ""  # a FActScore-format SQLite DB (e.g. enwiki-20230401.db); "" = build the embedded one


@asset(
    group_name="evaluation",
    code_version=code_fingerprint(knowledge, entities),
    description="FActScore's knowledge source (SQLite documents(title, text), passages joined by its separator): "
    "the articles of the embedded dwiki people, or a DB you point at.",
)
def knowledge_source(context: AssetExecutionContext, config: KnowledgeSourceConfig, storage: LacyStorage) -> MaterializeResult:
    if config.path:
        with KnowledgeSource(config.path) as ks:
            stats = {"documents": len(ks), "path": storage.ref(config.path)}
    else:
        path = storage.path("knowledge", "embedded.db")
        stats = {**build_embedded_knowledge(path, log=context.log.info), "path": storage.ref(path)}
    write_json(storage.path("knowledge", "source.json"), stats)
    return MaterializeResult(metadata={k: v for k, v in stats.items() if isinstance(v, int | float | str)})


class FactScoreAssetConfig(Config):
    judge_backend: str = ""  # "" = the lexical proxy only; else transformers, vllm, openai-chat, openai-completions
    judge_model: str = ""  # a local model dir, or the served model's name
    base_url: str = ""  # for the OpenAI-compatible backends, ending in /v1
    gamma: int = 10


@evaluation_asset(
    "factscore",
    "FactScore (App. B) of the cascade's biographies when a judge LLM is configured; always the "
    "clearly named lexical proxy `fact_overlap_proxy` (never called FactScore).",
    deps=[cascade_generations, knowledge_source],
)
def factscore_eval(context: AssetExecutionContext, config: FactScoreAssetConfig, storage: LacyStorage) -> MaterializeResult:
    gens = read_result(storage, context.partition_key, "cascade_generations")
    if gens is None:
        raise FileNotFoundError(f"{result_path(storage, context.partition_key, 'cascade_generations')}: materialize cascade_generations first")
    source = read_json(storage.path("knowledge", "source.json"))
    knowledge_path = storage.resolve(source["path"])
    topics = [g["title"] for g in gens["generations"]]
    texts = [bio_generation(g["entity"], g["text"]) for g in gens["generations"]]
    with KnowledgeSource(knowledge_path) as ks:
        result = {"fact_overlap_proxy": fact_overlap_proxy(topics, texts, ks, gamma=config.gamma, log=context.log.info)}
        if config.judge_backend:
            llm = llm_backends.load_llm(config.judge_backend, config.judge_model, config.base_url or None, device=_device(),
                                        cache_path=storage.path("evaluation", "judge_cache.jsonl"))
            result["factscore"] = factscore_lib.factscore(topics, texts, ks, llm, llm, FactScoreConfig(gamma=config.gamma), log=context.log.info)
    result["knowledge_source"] = source["path"]
    path = _save(context, storage, "factscore", result)
    proxy = result["fact_overlap_proxy"]
    metadata = {
        "fact_overlap_proxy": round(proxy["score"], 4),
        "fact_overlap_proxy_without_length_penalty": round(proxy["init_score"], 4),
        "abstention_ratio": round(proxy["abstention_ratio"], 4),
        "result": MetadataValue.path(str(path)),
    }
    if "factscore" in result:
        metadata["factscore"] = round(result["factscore"]["score"], 4)
    return MaterializeResult(metadata=metadata)


# ---------------------------------------------------------------- fact leakage and NLU


class FactLeakageConfig(Config):
    limit: int | None = 200  # the first N questions of each dataset (CPU); None = all 1,399 + 20,442


@evaluation_asset(
    "fact_leakage",
    "Section 5.3: with <CALL> at -inf, 3-shot, is a gold answer or alias contained in the output? "
    "PopQA long tail and BigBench qa_wikidata. Lower is better.",
)
def fact_leakage(context: AssetExecutionContext, config: FactLeakageConfig, storage: LacyStorage) -> MaterializeResult:
    _cpu_threads()
    result = evaluate_leakage(load_checkpoint(checkpoint_dir(storage, context.partition_key), _device()), LeakageConfig(limit=config.limit), context.log.info)
    path = _save(context, storage, "fact_leakage", result)
    return MaterializeResult(
        metadata={
            "popqa_leakage": round(result["popqa"]["leakage"], 4),
            "bigbench_qa_wikidata_leakage": round(result["bigbench_qa_wikidata"]["leakage"], 4),
            "questions": result["popqa"]["questions"] + result["bigbench_qa_wikidata"]["questions"],
            "result": MetadataValue.path(str(path)),
        }
    )


class NLUConfig(Config):
    limit: int | None = 200  # the first N documents of each task (CPU); None = all
    batch_size: int = 8


@evaluation_asset("nlu", "Table 1: ARC-Easy, HellaSwag, PIQA and SIQA through lm-eval with the <CALL> logit masked.")
def nlu_eval(context: AssetExecutionContext, config: NLUConfig, storage: LacyStorage) -> MaterializeResult:
    _cpu_threads()
    result = evaluate_nlu(
        checkpoint_dir(storage, context.partition_key), limit=config.limit, batch_size=config.batch_size,
        cache_dir=storage.path("evaluation", "lm_eval_tasks"), log=context.log.info,
    )
    path = _save(context, storage, "nlu", result)
    rows = [{"task": t, **{k: v for k, v in r.items() if k in ("samples", "acc", "acc_norm")}} for t, r in result["tasks"].items()]
    return MaterializeResult(metadata={"tasks": md_table(rows), **{f"{r['task']}_acc": round(r["acc"], 4) for r in rows}, "result": MetadataValue.path(str(path))})


EVALUATION_ASSETS = [validation_losses, cascade_generations, knowledge_source, factscore_eval, fact_leakage, nlu_eval]
EVALUATION_KEYS = [AssetKey(name) for name in EVALUATION_INPUTS]  # each writes <partition>/<name>.json


def stale_evaluations(storage: LacyStorage, partition_key: str) -> list[AssetKey]:
    """The evaluations of a checkpoint that ran before on other code, data or weights than
    there are now (their stored inputs fingerprint differs)."""
    stored = {name: r for name in EVALUATION_INPUTS if (r := read_result(storage, partition_key, name)) is not None}
    if not stored:
        return []
    checkpoint_sha = checkpoint_fingerprint(checkpoint_dir(storage, partition_key))
    stale = [AssetKey(name) for name, r in stored.items() if r.get("inputs_fingerprint") != inputs_fingerprint(name, checkpoint_sha)]
    if AssetKey("cascade_generations") in stale and "factscore" in stored:
        stale.append(AssetKey("factscore"))  # scores the generations
    return sorted(set(stale), key=lambda k: k.path)
