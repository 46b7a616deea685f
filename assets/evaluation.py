"""The evaluations of a checkpoint and their registry, `EVALUATIONS` (the entry type:
`assets.registry.Evaluation`): validation losses (A.4.3), cascade generations (A.5),
FactScore or its lexical proxy (App. B), fact leakage (5.3), NLU (Table 1) and
acceptability (section 3, A.1, Figure 3); and FactScore's knowledge source. Each measure
loads its checkpoint once (its identity, hashed once, is the result's "checkpoint")."""

import os
from pathlib import Path

import torch
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from assets.data import token_shards
from assets.metadata import md_png, md_table
from assets.models import latest_checkpoint_of
from assets.registry import Evaluation, Measured
from assets.resources import JudgeResource, LacyStorage
from assets.results import checkpoint_dir, read_result, result_path
from evaluation import backends, cascade, checkpoint
from evaluation.backends.config import BackendConfig, load_backend
from evaluation.backends.text import CachedLLM
from evaluation.cascade.generate import CALL_MODES, CascadeConfig, generate, rag_prefix, render, summarize
from evaluation.checkpoint import load_checkpoint
from evaluation.factscore import atomic_facts, entities, knowledge
from evaluation.factscore import metric as factscore_lib
from evaluation.factscore import proxy as fact_overlap
from evaluation.factscore.entities import bio_generation, build_embedded_knowledge, entity_prompts
from evaluation.factscore.knowledge import KnowledgeSource
from evaluation.factscore.metric import FactScoreConfig
from evaluation.factscore.proxy import fact_overlap_proxy
from evaluation.measures import acceptability as acceptability_lib
from evaluation.measures import leakage, nlu, validation
from evaluation.measures.acceptability import AcceptabilityConfig, PromptJudge, evaluate_acceptability
from evaluation.measures.leakage import LeakageConfig, evaluate_leakage
from evaluation.measures.nlu import evaluate_nlu
from evaluation.measures.validation import ValidationConfig, evaluate_validation
from evaluation.report.comparison import NO_CALL, call_decision_section, methods_section, nlu_section
from evaluation.report.figure3 import acceptability_section
from pipelines.files import code_fingerprint, read_json, write_json
from pipelines.shards import MANIFEST
from trainer.masks import METHODS, get_method
from trainer.presets import REFERENCE


def _cpu_threads() -> None:
    # Evaluations of tiny models run fastest on one thread each (two run side by side).
    if not torch.cuda.is_available():
        torch.set_num_threads(int(os.environ.get("LACY_EVAL_THREADS", "1")))


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---------------------------------------------------------------- validation losses


CALL_DECISION_KEYS = ("call_top_fraction", "mean_p_call_at_calls", "mean_p_call_at_non_calls",
                      *(f"call_auc_{r}" for r in validation.REFERENCES))


class ValidationLossesConfig(Config):
    max_tokens: int | None = None  # the first N validation tokens (None: all)
    batch_size: int = 8
    baseline: str = ""  # a baseline checkpoint for the matched losses; "" = the latest baseline_model


def validation_losses(context: AssetExecutionContext, config: ValidationLossesConfig, storage: LacyStorage) -> Measured:
    """A.4.3: call, non-call and total validation loss with the 15% call-mask decoding rule, and
    the baseline's losses on the same call mask (Figure 5); the call decision (top fraction,
    p(<CALL>), ROC AUCs of the <CALL> logit against the method's own rule, spaCy facts and the
    baseline's hard tokens)."""
    _cpu_threads()
    model = load_checkpoint(checkpoint_dir(storage, context.partition_key))  # on the CPU, as its baseline and reference
    baseline = config.baseline or latest_checkpoint_of(storage, "baseline")
    if baseline and Path(baseline).resolve() == model.path.resolve():
        baseline = None
    method = METHODS.get(model.info["method"])
    reference = latest_checkpoint_of(storage, REFERENCE) if method and method.needs.ref_loss else None  # rho1's rule on validation
    result = evaluate_validation(
        model, storage.path("token_shards"), baseline, ValidationConfig(batch_size=config.batch_size, max_tokens=config.max_tokens),
        context.log.info, reference,
    )
    keys = ("call_loss", "call_loss_without_call", "non_call_loss", "total_loss", "call_fraction", "baseline_call_loss",
            "baseline_non_call_loss", "baseline_total_loss", *CALL_DECISION_KEYS)
    return Measured(result, {
        **{k: round(result[k], 4) for k in keys if result.get(k) is not None},
        **{f"{k}_not_measured": reason for k, reason in result["call_auc_notes"].items()},
        "tokens": result["tokens"],
        "baseline_checkpoint": MetadataValue.path(str(baseline)) if baseline else "none",
    })


# ---------------------------------------------------------------- cascade


class CascadeGenerationsConfig(Config):
    partner: str = ""  # a local HF causal LM directory ("" = the latest reference_model checkpoint), or the served model's name (openai)
    backend: str = "transformers"  # or "vllm" (GPU), or "openai" (a server's /v1/completions at base_url)
    base_url: str = ""  # openai: the endpoint, ending in /v1
    api_key_env: str = "OPENAI_API_KEY"  # openai: the environment variable holding the API key ("" = none)
    concurrency: int = 8  # openai: requests in flight
    tensor_parallel_size: int = 1  # vllm: GPUs the partner is split over
    entities: str = "embedded"  # "embedded" (dwiki people) or "paper" (FActScore's 183)
    split: str = "train"  # embedded people of this split (their articles are in the pretraining data, as in the paper)
    limit: int | None = 40  # the first N entities (CPU); None = all
    max_new_tokens: int = 256
    call_budget: float = 0.22  # section 5.1: "an equal call budget of 22% of tokens" (the budgeted mode)
    modes: list[str] = list(CALL_MODES)  # "budgeted" is the one FactScore and Figures 2/6 use
    rag: bool = False  # A.5's RAG prompt for the partner, with the entity's article (embedded only)


def cascade_modes(config: CascadeGenerationsConfig, method: str) -> list[str]:
    """The generation modes of a checkpoint: the configured ones, "budgeted" always, and
    `no_call` for a method that does not train <CALL> (the baseline appears twice: without
    calls, and with its untrained <CALL> logit under the same budget)."""
    modes = list(dict.fromkeys(["budgeted", *config.modes]))
    return modes + ([NO_CALL] if not get_method(method).calls else [])


def mode_config(mode: str, config: CascadeGenerationsConfig) -> CascadeConfig:
    if mode == NO_CALL:
        return CascadeConfig(max_new_tokens=config.max_new_tokens, calls=False)
    return CascadeConfig(max_new_tokens=config.max_new_tokens, call_mode=mode, call_budget=config.call_budget)


def cascade_generations(context: AssetExecutionContext, config: CascadeGenerationsConfig, storage: LacyStorage) -> Measured:
    """A.5: biographies by the model in a cascade with its partner (greedy, 256 tokens,
    repetition penalty 1.2), once per call mode: at an equal call budget (22% of the generated
    tokens of all biographies) and natively (where <CALL> is the argmax); the baseline also
    without calls. Per mode: the realized call rate, per generation and overall, and the
    partner cost."""
    _cpu_threads()
    partner_dir = config.partner or (latest_checkpoint_of(storage, REFERENCE) if config.backend != "openai" else "")
    if not partner_dir:
        raise FileNotFoundError("no cascade partner: materialize reference_model or set config.partner to a local HF model directory "
                                "(with backend openai: the served model's name)")
    rows = entity_prompts(config.entities, config.split)[: config.limit]
    small = load_checkpoint(checkpoint_dir(storage, context.partition_key), _device())
    # the partner in float32 on the transformers engine: exact top-2 (our checkpoints are float32 already)
    partner = load_backend(BackendConfig(
        config.backend, str(partner_dir), base_url=config.base_url or None, device=_device(), dtype="float32",
        tensor_parallel_size=config.tensor_parallel_size, api_key_env=config.api_key_env or None,
        concurrency=config.concurrency))
    prefixes = None
    if config.rag:
        articles = {p["title"]: p["text"] for p in entities.embedded_people("all")}
        prefixes = [rag_prefix(entity, articles.get(title)) for entity, _, title in rows]
    runs = {}
    for mode in cascade_modes(config, small.info["method"]):
        context.log.info(f"cascade: mode {mode}")
        runs[mode] = generate(small, [prompt for _, prompt, _ in rows], partner, mode_config(mode, config), prefixes, context.log.info)
    modes = {mode: {"summary": summarize(gens), "generations": [{"entity": e, "title": t, **g.to_dict()} for (e, _, t), g in zip(rows, gens)]}
             for mode, gens in runs.items()}
    result = {"checkpoint": small.identity(), "partner": storage.ref(partner_dir), "config": config.model_dump(), "modes": modes}
    budgeted = modes["budgeted"]
    examples = "\n\n".join(f"**{e}**: {render(g, color=False)}" for (e, _, _), g in list(zip(rows, runs["budgeted"]))[:3])
    return Measured(result, {
        "generations": len(rows),
        "call_budget": config.call_budget,
        **{f"realized_call_rate_{m}": round(r["summary"]["call_rate"], 4) for m, r in modes.items()},
        "partner_token_fraction": round(budgeted["summary"]["partner_token_fraction"], 4),
        "mean_partner_tokens_per_call": round(budgeted["summary"]["mean_partner_tokens_per_call"], 2),
        "partner": MetadataValue.path(str(partner_dir)),
        "examples": MetadataValue.md(examples),
    })


# ---------------------------------------------------------------- FactScore


class KnowledgeSourceConfig(Config):
    path: str = ""  # a FActScore-format SQLite DB (e.g. enwiki-20230401.db); "" = build the embedded one


@asset(group_name="evaluation", code_version=code_fingerprint(knowledge, entities))
def knowledge_source(context: AssetExecutionContext, config: KnowledgeSourceConfig, storage: LacyStorage) -> MaterializeResult:
    """FActScore's knowledge source (SQLite documents(title, text), passages joined by its
    separator): the articles of the embedded dwiki people, or a DB you point at."""
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
    judge_chat: bool = False  # transformers/vllm: prompts in the judge's chat template (an instruct model)
    base_url: str = ""  # for the OpenAI-compatible backends, ending in /v1
    api_key_env: str = "OPENAI_API_KEY"  # OpenAI-compatible: the environment variable holding the API key ("" = none)
    concurrency: int = 4  # OpenAI-compatible: requests in flight
    tensor_parallel_size: int = 1  # vllm: GPUs the judge is split over
    gamma: int = 10


def score_generations(generations: list[dict], ks: KnowledgeSource, llm, gamma: int, log) -> dict:
    """The lexical proxy of a list of generation records, and FactScore when a judge `llm` is given."""
    topics = [g["title"] for g in generations]
    texts = [bio_generation(g["entity"], g["text"]) for g in generations]
    result = {"fact_overlap_proxy": fact_overlap_proxy(topics, texts, ks, gamma=gamma, log=log)}
    if llm is not None:
        result["factscore"] = factscore_lib.factscore(topics, texts, ks, llm, llm, FactScoreConfig(gamma=gamma), log=log)
    return result


def factscore_eval(context: AssetExecutionContext, config: FactScoreAssetConfig, storage: LacyStorage) -> Measured:
    """FactScore (App. B) of the cascade's biographies when a judge LLM is configured; always
    the clearly named lexical proxy `fact_overlap_proxy` (never called FactScore). Its
    checkpoint is the one that wrote the biographies (as the generations record it)."""
    gens = read_result(storage, context.partition_key, "cascade_generations")
    if gens is None:
        raise FileNotFoundError(f"{result_path(storage, context.partition_key, 'cascade_generations')}: materialize cascade_generations first")
    source = read_json(storage.path("knowledge", "source.json"))
    llm = None
    if config.judge_backend:
        engine, _, api = config.judge_backend.partition("-")  # "openai-chat": the openai engine's chat API
        judge = BackendConfig(engine, config.judge_model, base_url=config.base_url or None, api=api or "chat",
                              chat=config.judge_chat, device=_device(), tensor_parallel_size=config.tensor_parallel_size,
                              api_key_env=config.api_key_env or None, concurrency=config.concurrency)
        llm = CachedLLM(load_backend(judge), storage.path("evaluation", "judge_cache.jsonl"))
    with KnowledgeSource(storage.resolve(source["path"])) as ks:
        # the budgeted generations (Figures 2/6); the baseline's generations without calls beside them
        result = score_generations(gens["modes"]["budgeted"]["generations"], ks, llm, config.gamma, context.log.info)
        if NO_CALL in gens["modes"]:
            result[NO_CALL] = score_generations(gens["modes"][NO_CALL]["generations"], ks, llm, config.gamma, context.log.info)
    result["knowledge_source"] = source["path"]
    result["checkpoint"] = {**gens["checkpoint"], "path": str(storage.resolve(gens["checkpoint"]["path"]))}
    proxy = result["fact_overlap_proxy"]
    metadata = {
        "fact_overlap_proxy": round(proxy["score"], 4),
        "fact_overlap_proxy_without_length_penalty": round(proxy["init_score"], 4),
        "abstention_ratio": round(proxy["abstention_ratio"], 4),
    }
    if "factscore" in result:
        metadata["factscore"] = round(result["factscore"]["score"], 4)
    if NO_CALL in result:
        metadata["fact_overlap_proxy_no_call"] = round(result[NO_CALL]["fact_overlap_proxy"]["score"], 4)
    return Measured(result, metadata)


# ---------------------------------------------------------------- fact leakage and NLU


class FactLeakageConfig(Config):
    limit: int | None = 200  # the first N questions of each dataset (CPU); None = all 1,399 + 20,442


def fact_leakage(context: AssetExecutionContext, config: FactLeakageConfig, storage: LacyStorage) -> Measured:
    """Section 5.3: with <CALL> at -inf, 3-shot, does the output state a gold answer or alias?
    PopQA long tail and BigBench qa_wikidata. Lower is better."""
    _cpu_threads()
    model = load_checkpoint(checkpoint_dir(storage, context.partition_key), _device())
    result = evaluate_leakage(model, LeakageConfig(limit=config.limit), context.log.info)
    return Measured(result, {
        "popqa_leakage": round(result["popqa"]["leakage"], 4),
        "bigbench_qa_wikidata_leakage": round(result["bigbench_qa_wikidata"]["leakage"], 4),
        "questions": result["popqa"]["questions"] + result["bigbench_qa_wikidata"]["questions"],
        "answer_rule": md_table([{"benchmark": b, "scored": result[b]["scored"], **result[b]["answer_rule"]}
                                 for b in ("popqa", "bigbench_qa_wikidata")]),
    })


class NLUConfig(Config):
    limit: int | None = 200  # the first N documents of each task (CPU); None = all
    batch_size: int = 8


def nlu_eval(context: AssetExecutionContext, config: NLUConfig, storage: LacyStorage) -> Measured:
    """Table 1: ARC-Easy, HellaSwag, PIQA and SIQA through lm-eval with the <CALL> logit masked."""
    _cpu_threads()
    result = evaluate_nlu(  # the model on the CPU, as the evaluation always loaded it
        load_checkpoint(checkpoint_dir(storage, context.partition_key)), limit=config.limit, batch_size=config.batch_size,
        cache_dir=storage.path("evaluation", "lm_eval_tasks"), log=context.log.info,
    )
    rows = [{"task": t, **{k: v for k, v in r.items() if k in ("samples", "acc", "acc_norm")}} for t, r in result["tasks"].items()]
    return Measured(result, {"tasks": md_table(rows), **{f"{r['task']}_acc": round(r["acc"], 4) for r in rows}})


# ---------------------------------------------------------------- acceptability

ACCEPTABILITY_JUDGE = "acceptability_judge"  # the resource key of its judge (`JudgeResource`)
JUDGE_ENV = "LACY_ACCEPTABILITY_JUDGE_"  # the project's instance reads the judge from `JUDGE_ENV` + field name
NO_JUDGE = (f"a judge (configure the {ACCEPTABILITY_JUDGE} resource: {JUDGE_ENV}ENGINE, {JUDGE_ENV}MODEL, "
            f"{JUDGE_ENV}BASE_URL, ...)")


class AcceptabilityAssetConfig(Config):
    documents: int = 112  # the fixed validation batch (A.1: 112 documents)
    judge_matches: bool = True  # A.1 judges every position; False: a greedy token equal to the true one is acceptable unasked
    max_new_tokens: int = 256  # the judge's answer: its explanation, then the output label


def acceptability(context: AssetExecutionContext, config: AcceptabilityAssetConfig, storage: LacyStorage) -> Measured | None:
    """Section 3 / A.1: at every position of the fixed validation batch, the model's greedy
    token judged acceptable or not by the A.1 prompt, with accuracy and the spaCy classes;
    the Figure 3 analogue (accuracy and acceptability by loss bin, facts and non-facts).
    Evaluates nothing, and says so, while no judge is configured (`acceptability_judge`)."""
    judge = getattr(context.resources, ACCEPTABILITY_JUDGE)
    if not judge.engine:
        context.log.warning(f"acceptability not evaluated: it waits on {NO_JUDGE}")
        return None
    _cpu_threads()
    model = load_checkpoint(checkpoint_dir(storage, context.partition_key), _device())
    backend = load_backend(BackendConfig(
        judge.engine, judge.model, base_url=judge.base_url or None, api=judge.api, chat=judge.chat, device=_device(),
        tensor_parallel_size=judge.tensor_parallel_size, api_key_env=judge.api_key_env or None, concurrency=judge.concurrency))
    prompt_judge = PromptJudge(CachedLLM(backend, storage.path("evaluation", "acceptability_judge_cache.jsonl")),
                               max_new_tokens=config.max_new_tokens, log=context.log.info)
    out = result_path(storage, context.partition_key, "acceptability").parent  # beside the result file
    result = evaluate_acceptability(model, storage.path("token_shards"), prompt_judge, out,
                                    AcceptabilityConfig(documents=config.documents, judge_matches=config.judge_matches),
                                    context.log.info)
    overall = result["overall"]
    return Measured(result, {
        "judge": result["judge"],
        "documents": result["documents"],
        "tokens": overall["all"]["tokens"],
        "judge_queries": result["judge_queries"],
        "unparseable": overall["all"]["unparseable"],
        **{f"{metric}_{group}": round(overall[group][metric], 4) for group in ("fact", "non_fact") for metric in ("accuracy", "acceptability")
           if overall[group][metric] is not None},
        "figure_3": md_png(out / acceptability_lib.FIGURE_FILE),
    })


# ---------------------------------------------------------------- the registry


def needs_token_shards(resources) -> list[str]:
    return [] if resources.storage.path("token_shards", MANIFEST).exists() else ["token_shards"]


def needs_partner(resources) -> list[str]:
    return [] if latest_checkpoint_of(resources.storage, REFERENCE) else ["reference_model (the cascade partner)"]


def needs_partner_and_knowledge(resources) -> list[str]:
    knowledge = [] if resources.storage.path("knowledge", "source.json").exists() else ["knowledge_source"]
    return needs_partner(resources) + knowledge


def needs_shards_and_judge(resources) -> list[str]:
    judge: JudgeResource = getattr(resources, ACCEPTABILITY_JUDGE)
    return needs_token_shards(resources) + ([] if judge.engine else [NO_JUDGE])


VALIDATION = Evaluation("validation_losses", validation_losses, (validation, checkpoint), waits_on=needs_token_shards,
                        section=methods_section, deps=(token_shards,))
CASCADE = Evaluation("cascade_generations", cascade_generations, (cascade, backends, entities, checkpoint),  # backends: every engine
                     waits_on=needs_partner, section=call_decision_section)
EVALUATIONS = [
    VALIDATION,
    CASCADE,
    Evaluation("factscore", factscore_eval, (factscore_lib, atomic_facts, fact_overlap, knowledge, backends, entities),
               waits_on=needs_partner_and_knowledge, deps=(CASCADE.asset, knowledge_source), reads=(CASCADE.name,)),
    Evaluation("fact_leakage", fact_leakage, (leakage, checkpoint), (leakage.POPQA_FILE, leakage.BIGBENCH_FILE)),
    Evaluation("nlu", nlu_eval, (nlu, checkpoint), (nlu.LM_EVAL_MODEL_FILE, *sorted(Path(nlu.NLU_DIR).rglob("*.xz"))),
               section=nlu_section),
    Evaluation("acceptability", acceptability, (acceptability_lib, backends, checkpoint), waits_on=needs_shards_and_judge,
               section=acceptability_section, deps=(token_shards,), resources=(ACCEPTABILITY_JUDGE,)),
]
