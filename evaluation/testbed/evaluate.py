"""One model of a testbed cell, evaluated exactly (`evaluate_model`): every number keeps its
units (the people prompted, the questions asked) so the report can give intervals over them
and over seeds (`evaluation.report.intervals`).

- generations: a biography per person ("{name}\\n\\n{name}", the corpus' title line and the
  sentence start) of the first `head_people` / `tail_people` of each bucket, without calls
  (`<CALL>` at -inf) and in a cascade at the equal call budget with each partner: `oracle`
  (`evaluation.testbed.oracle`, the upper bound) and `partner` (the cell's reference model,
  given the person's record from the knowledge base as background, A.5's RAG setup); scored
  by `exact.precision`; per generation its stated and supported facts, and the calls: made,
  declined by the partner (no value due), rejected (not writable with our vocabulary).
- leakage: the 3-shot attribute questions of `exact.questions` with `<CALL>` at -inf, per
  question whether the output contains the answer (section 5.3).
- call decisions: on train documents of head and tail people, the share of each token kind
  (`evaluation.testbed.kinds`) in the model's A.4.3 call mask, and each kind's no-call loss.
- validation: the Figure 5 losses with the matched baseline (`evaluation.measures.validation`).
- for the reference model (the partner): its attribute accuracy with its background (the
  record before "{name}\\n\\n" and the question's sentence start), as the cascade uses it.
- for the baseline and the reference: acceptability (section 3, Figure 3) on the fixed
  validation batch with the exact judge (`evaluation.testbed.judge`).
- the training probe (`trainer.probe`: which kinds the rule called while training), copied
  from the run directory.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

import evaluation.backends
import evaluation.cascade
from evaluation.backends.config import BackendConfig, load_backend
from evaluation.backends.partners import Partner
from evaluation.cascade.generate import CascadeConfig, Generation, generate, render, summarize
from evaluation.checkpoint import LoadedCheckpoint, load_checkpoint
from evaluation.measures import acceptability, leakage, validation
from evaluation.measures.acceptability import AcceptabilityConfig, evaluate_acceptability
from evaluation.measures.leakage import LeakageConfig, evaluate_questions
from evaluation.measures.validation import ValidationConfig, evaluate_validation, token_stats
from evaluation.testbed import exact, kinds, oracle
from evaluation.testbed import judge as exact_judge
from evaluation.testbed.cell import Cell, EvalConfig
from evaluation.testbed.exact import COMPLETIONS, PROMPT, KnowledgeBase, precision, questions
from evaluation.testbed.judge import ExactJudge
from evaluation.testbed.kinds import TOKEN_KINDS, character_kinds, token_kinds
from evaluation.testbed.oracle import OraclePartner
from pipelines import biographies
from pipelines.biographies import KB_DIR, PERSON_ATTRIBUTES, Person, World, generate_world, record
from pipelines.doc_ids import split_of
from pipelines.files import code_fingerprint, fingerprint, iter_jsonl
from trainer.decoded_mask import decode_call_mask
from trainer.presets import REFERENCE
from trainer.probe import PROBE_FILE

BUCKETS = ("head", "tail")  # the buckets biographies are written for (unseen people get questions only)
ACCEPTABILITY_MODELS = ("baseline", REFERENCE)
CODE = code_fingerprint(sys.modules[__name__], exact, oracle, kinds, exact_judge, evaluation.cascade, evaluation.backends,
                        leakage, validation, acceptability, biographies)


def people_of(kb: KnowledgeBase, bucket: str, config: EvalConfig) -> list[Person]:
    return kb.in_bucket(bucket)[: config.head_people if bucket == "head" else config.tail_people]


def background(person: Person) -> str:
    """What the trained partner reads before the text so far: the person's record."""
    return record(person) + "\n\n"


def generations(model: LoadedCheckpoint, kb: KnowledgeBase, partners: dict[str, Partner], config: EvalConfig,
                log: Callable[[str], None]) -> dict:
    out = {}
    for bucket in BUCKETS:
        people = people_of(kb, bucket, config)
        prompts = [PROMPT.format(name=p.name) for p in people]
        out[bucket] = {"person_id": [p.person_id for p in people]}
        for run, partner in {"no_call": None, **partners}.items():
            gen_config = CascadeConfig(max_new_tokens=config.max_new_tokens, repetition_penalty=config.repetition_penalty,
                                       call_budget=config.call_budget, calls=partner is not None)
            prefixes = [background(p) for p in people] if run == "partner" else None
            gens = generate(model, prompts, partner, gen_config, prefixes)
            scored = precision([g.text for g in gens], people, kb)
            out[bucket][run] = {**scored, "calls": summarize(gens), "examples": [_example(g) for g in gens[:3]]}
            log(f"{bucket} {run}: precision {scored['precision']}")
    return out


def _example(gen: Generation) -> dict:
    return {"prompt": gen.prompt, "text": gen.text, "marked": render(gen, color=False)[len(gen.prompt):], "call_rate": gen.call_rate}


def attribute_leakage(model: LoadedCheckpoint, kb: KnowledgeBase, config: EvalConfig, log: Callable[[str], None]) -> dict:
    """The 3-shot questions with `<CALL>` at -inf, per bucket (unseen people included)."""
    qa = LeakageConfig(repetition_penalty=config.repetition_penalty)
    out = {}
    for bucket in (*BUCKETS, "unseen"):
        people = kb.in_bucket(bucket)[: config.leakage_people]
        if people:
            result = evaluate_questions(model, questions(people), qa, log, bucket)
            out[bucket] = {k: result[k] for k in ("questions", "scored", "contained", "leakage", "contained_by_question")}
    return out


@torch.no_grad()
def background_accuracy(model: LoadedCheckpoint, kb: KnowledgeBase, config: EvalConfig) -> dict:
    """The partner's attribute accuracy as the cascade uses it: per person and attribute, the
    record, then "{name}\\n\\n" and the question's sentence start, greedy, `<CALL>` at -inf;
    correct when the output contains the value."""
    gen_config = CascadeConfig(max_new_tokens=12, repetition_penalty=config.repetition_penalty, calls=False)
    out = {}
    for bucket in (*BUCKETS, "unseen"):
        people = kb.in_bucket(bucket)[: config.leakage_people]
        prompts = [background(p) + f"{p.name}\n\n" + COMPLETIONS[a].format(name=p.name) for p in people for a in PERSON_ATTRIBUTES]
        answers = [p.value(a) for p in people for a in PERSON_ATTRIBUTES]
        texts = [g.text for g in generate(model, prompts, None, gen_config)] if prompts else []
        hits = [int(answer in text) for answer, text in zip(answers, texts)]
        if hits:
            out[bucket] = {"questions": len(hits), "accuracy": float(np.mean(hits)), "correct_by_question": hits}
    return out


@torch.no_grad()
def call_decisions(model: LoadedCheckpoint, kb: KnowledgeBase, world: World, config: EvalConfig) -> dict:
    """Where the model's calls fall on train documents of head and tail people: each document
    read after an EOS, the A.4.3 call mask over the documents of a bucket (15% of their
    tokens, top `<CALL>` logits first), per token kind the share called and the no-call loss."""
    tok = model.tokenizer
    out = {}
    for bucket in BUCKETS:
        ids_of = {p.person_id for p in kb.in_bucket(bucket)}
        docs = [d for d in world.documents if d.person_id in ids_of and split_of(d.doc_id) == "train"][: config.call_documents]
        if not docs:
            continue
        logits, targets, kinds = [], [], []
        for doc in docs:
            ids, starts, ends = tok.encode_with_offsets(doc.text)
            n = min(len(ids), model.max_positions)  # a document longer than the context is cut
            inputs = torch.tensor([[tok.eos_id, *ids[:n].tolist()]])
            logits.append(model.model(input_ids=inputs[:, :-1].to(model.model.device)).logits[0].float().cpu())
            targets.append(inputs[0, 1:])
            kinds.append(token_kinds(character_kinds(doc, bucket), starts[:n], ends[:n]))
        logits, targets = torch.cat(logits), torch.cat(targets)
        kind = torch.from_numpy(np.concatenate(kinds)).long()
        mask = decode_call_mask(logits, model.call_id)
        no_call = token_stats(logits, targets, model.call_id).token_loss  # -log p_{\CALL} (eq. A.6)
        present = [(k, name) for k, name in enumerate(TOKEN_KINDS) if bool((kind == k).any())]
        out[bucket] = {
            "documents": len(docs),
            "tokens": int(len(kind)),
            "called": {name: float(mask[kind == k].float().mean()) for k, name in present},
            "no_call_loss": {name: float(no_call[kind == k].mean()) for k, name in present},
            "calls_on_values": float((mask & (kind >= 2)).sum() / max(int(mask.sum()), 1)),
        }
    return out


def training_probe(run_dir: Path) -> list[dict]:
    path = run_dir / PROBE_FILE
    return [row for _, row in iter_jsonl(path)] if path.exists() else []


def inputs_fingerprint(cell: Cell, checkpoint_sha: str, partner_sha: str, baseline_sha: str | None) -> str:
    """What an evaluation of a model of the cell depends on: this code, the evaluation's
    config, the world, the model's, the partner's and the matched baseline's weights."""
    return fingerprint(CODE, asdict(cell.scenario.evaluation), cell.world.source(), checkpoint_sha, partner_sha, baseline_sha)


def evaluate_model(cell: Cell, name: str, checkpoint: Path, partner: Path, baseline: Path | None,
                   log: Callable[[str], None] = print) -> dict:
    """Every measurement of the module docstring for model `name` of `cell`."""
    config = cell.scenario.evaluation
    model = load_checkpoint(checkpoint)
    kb = KnowledgeBase.load(cell.path("corpus", KB_DIR))
    world = generate_world(cell.world)
    partners: dict[str, Partner] = {"oracle": OraclePartner(kb, model.tokenizer)}
    if name != REFERENCE:
        partners["partner"] = load_backend(BackendConfig("transformers", str(partner), dtype="float32"))
    result = {
        "model": name,
        "checkpoint": {**model.identity(), "num_params": model.info["num_params"]},
        "generations": generations(model, kb, partners, config, log),
        "leakage": attribute_leakage(model, kb, config, log),
        "call_decisions": call_decisions(model, kb, world, config),
        "validation": evaluate_validation(model, cell.path("token_shards"), baseline if name != "baseline" else None,
                                          ValidationConfig(max_tokens=config.validation_tokens), log),
        "probe": training_probe(checkpoint.parent),
    }
    if name == REFERENCE:
        result["background_accuracy"] = background_accuracy(model, kb, config)
    if name in ACCEPTABILITY_MODELS:
        result["acceptability"] = evaluate_acceptability(model, cell.path("token_shards"), ExactJudge(world),
                                                         cell.path("evaluation", f"{name}-acceptability"),
                                                         AcceptabilityConfig(documents=config.acceptability_documents), log)
    return result
