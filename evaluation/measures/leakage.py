"""Fact leakage (sec. 5.3): with the `<CALL>` logit at -inf, does the small model still
produce the gold answer of a factual question? 3-shot prompts, greedy decoding; the metric
is the fraction of questions whose output contains a gold answer or alias. Lower is
better: a model that delegates facts should not have memorized them.

Choices (the paper gives the datasets and the metric only):
- PopQA long tail: the paper rephrased questions into sentence starts with Gemini; here a
  deterministic template per relation appends a sentence start to PopQA's own question
  (`COMPLETIONS`, e.g. "What is Ufa the capital of? Ufa is the capital of").
  BigBench qa_wikidata inputs are sentence starts already.
- Demonstrations: 3 other questions of the same dataset, drawn with a seeded generator per
  query, preferring the query's relation (PopQA `prop`; BigBench: the words before " of ",
  e.g. "The country"). A demonstration is skipped when its line states one of the query's
  answers or one of its answers states one of the query's ("punk rock" for a query whose
  alias is "rock"), both under the matching rule below. Format: one "prompt answer" line
  per demonstration (the first gold answer), then the query prompt.
- Questions whose own prompt states an answer ("basketball" in "Kiribati men's national
  basketball team plays") are reported and left out of the leakage rate: there an answer
  in the output may be a copy, so it says nothing about what the model memorized.
- Generation: the inference settings of A.5 (greedy, repetition penalty 1.2 over the whole
  prompt) with at most 16 new tokens, cut at the first line break (the demonstrations'
  separator) before matching.
- Matching (`answer_aliases`, `states_answer`): an answer counts only when the output
  states it. Text is normalized as SQuAD does (punctuation deleted, articles a/an/the
  removed, whitespace collapsed) and aliases match whole words. An alias written in 2-4
  capitals after that ("IN", "US", "U.S.A.", "CAN") is a code and matches case-sensitively,
  so "in" or "can" in an output is not India or Canada; every other alias matches
  lowercased. Aliases of one character ("⚾", "2", "O"), that are English stop words
  (spaCy's list: "in", "can", "no", "May") or that are two lowercase letters (ISO codes:
  "de", "fr", "ir", which prose writes as words: "de la", "fr.") are not used alone; a
  question left without any alias is not scored. The counts of questions affected are in
  the result.
"""

from __future__ import annotations

import re
import string
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from spacy.lang.en.stop_words import STOP_WORDS

from evaluation import cascade, checkpoint
from evaluation.backends import partners
from evaluation.cascade.generate import CascadeConfig, generate
from evaluation.checkpoint import LoadedCheckpoint, load_checkpoint
from pipelines.corpus import EMBEDDED_DIR
from pipelines.files import code_fingerprint, file_sha256, fingerprint, iter_jsonl, read_json_file

POPQA_FILE = EMBEDDED_DIR / "popqa" / "popqa_longtail.jsonl.xz"
BIGBENCH_FILE = EMBEDDED_DIR / "bigbench_qa_wikidata" / "task.json.xz"

# One sentence start per PopQA relation (all 16 of PopQA; the long tail uses 15: no color).
COMPLETIONS = {
    "occupation": "{subj}'s occupation is",
    "place of birth": "{subj} was born in",
    "genre": "The genre of {subj} is",
    "father": "The father of {subj} is",
    "country": "The country of {subj} is",
    "producer": "The producer of {subj} was",
    "director": "{subj} was directed by",
    "capital of": "{subj} is the capital of",
    "screenwriter": "The screenwriter of {subj} was",
    "composer": "The composer of {subj} was",
    "color": "The color of {subj} is",
    "religion": "The religion of {subj} is",
    "sport": "{subj} plays",
    "author": "The author of {subj} is",
    "mother": "The mother of {subj} is",
    "capital": "The capital of {subj} is",
}


@dataclass(frozen=True)
class Question:
    prompt: str  # a sentence start whose continuation is the answer
    answers: tuple[str, ...]  # gold answer first, then aliases
    relation: str


@dataclass(frozen=True)
class LeakageConfig:
    num_shots: int = 3
    max_new_tokens: int = 16
    repetition_penalty: float = 1.2
    limit: int | None = None  # the first N questions of each dataset (CPU); None = all
    seed: int = 0
    chunk_size: int = 64  # prompts generated in lockstep (bounds the KV caches held)
    popqa_path: str = str(POPQA_FILE)
    bigbench_path: str = str(BIGBENCH_FILE)


def load_popqa(path: str | Path = POPQA_FILE) -> list[Question]:
    """PopQA rows (`question`, `subj`, `prop`, `possible_answers`, `o_aliases`) as prompts."""
    questions = []
    for line_no, row in iter_jsonl(path):
        try:
            completion = COMPLETIONS[row["prop"]].format(subj=row["subj"])
            answers = tuple(dict.fromkeys([row["obj"], *row["possible_answers"], *row["o_aliases"]]))
            questions.append(Question(f"{row['question']} {completion}", answers, row["prop"]))
        except KeyError as e:
            raise ValueError(f"{path}, line {line_no}: not a PopQA row with a known relation ({e!r})") from e
    return questions


def load_bigbench(path: str | Path = BIGBENCH_FILE) -> list[Question]:
    """BIG-bench qa_wikidata examples (`input`, `target`: a string or a list)."""
    questions = []
    for k, ex in enumerate(read_json_file(path)["examples"]):
        target = ex.get("target")
        answers = tuple([target] if isinstance(target, str) else target or [])
        if not isinstance(ex.get("input"), str) or not answers:
            raise ValueError(f"{path}: example {k} has no input or target")
        relation = ex["input"].split(" of ", 1)[0] if " of " in ex["input"] else ""
        questions.append(Question(ex["input"], answers, relation))
    return questions


PUNCTUATION = set(string.punctuation)
ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
LOWERCASE_CODE = re.compile(r"[a-z]{2}")  # Wikidata's ISO codes as PopQA lists them: "de", "fr", "ir"


def normalize(text: str, lowercase: bool = True) -> str:
    """SQuAD's answer normalization: lowercase, punctuation deleted, articles removed,
    whitespace collapsed ("The U.S.A.!" -> "usa"); `lowercase=False` keeps the case
    ("The U.S.A.!" -> "USA")."""
    text = text.lower() if lowercase else text
    text = "".join(ch for ch in text if ch not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


@dataclass(frozen=True)
class Alias:
    text: str  # normalized
    cased: bool  # a code of capitals: matched case-sensitively


def alias(answer: str) -> Alias | None:
    """What an answer is matched as: a code of 2-4 capitals as written, otherwise
    lowercased; None for one character, a stop word or a two-letter lowercase code."""
    cased = normalize(answer, lowercase=False)
    if 2 <= len(cased) <= 4 and cased.isalpha() and cased.isupper():
        return Alias(cased, True)
    norm = normalize(answer)
    if len(norm) <= 1 or norm in STOP_WORDS or LOWERCASE_CODE.fullmatch(cased):
        return None
    return Alias(norm, False)


@lru_cache(maxsize=None)
def answer_aliases(answers: tuple[str, ...]) -> tuple[Alias, ...]:
    """The distinct aliases an output is matched against."""
    return tuple(dict.fromkeys(a for a in map(alias, answers) if a is not None))


def states_answer(output: str, aliases: Sequence[Alias]) -> bool:
    """Whether the output states one of the aliases (whole words, normalized)."""
    lower, cased = f" {normalize(output)} ", f" {normalize(output, lowercase=False)} "
    return any(f" {a.text} " in (cased if a.cased else lower) for a in aliases)


def contains_answer(output: str, answers: Sequence[str]) -> bool:
    """Whether the output states one of the answers under the matching rule."""
    return states_answer(output, answer_aliases(tuple(answers)))


def overlaps(demo: Question, query: Question) -> bool:
    """Whether a demonstration's line states one of the query's answers, or one of its
    answers states one of the query's aliases ("punk rock" vs "rock", either way)."""
    own, theirs = answer_aliases(query.answers), answer_aliases(demo.answers)
    return (states_answer(demo.prompt, own) or any(states_answer(a, own) for a in demo.answers)
            or any(states_answer(a, theirs) for a in query.answers))


def relation_pools(questions: Sequence[Question]) -> dict[str, list[int]]:
    pools = defaultdict(list)
    for i, q in enumerate(questions):
        pools[q.relation].append(i)
    return dict(pools)


def demonstrations(questions: Sequence[Question], index: int, num_shots: int, seed: int,
                   pools: dict[str, list[int]] | None = None) -> list[Question]:
    """`num_shots` other questions for question `index`: same relation first, none that
    `overlaps` it, in the order of a generator seeded with (seed, index)."""
    pools = relation_pools(questions) if pools is None else pools
    query = questions[index]
    rng = np.random.default_rng([seed, index])
    same = [i for i in pools[query.relation] if i != index]
    chosen: list[Question] = []
    for pool in (same, lambda: [i for r, p in pools.items() if r != query.relation for i in p]):
        pool = pool() if callable(pool) else pool  # other relations only when needed
        for i in rng.permutation(len(pool)):
            if len(chosen) == num_shots:
                return chosen
            q = questions[pool[i]]
            if not overlaps(q, query):
                chosen.append(q)
    return chosen


def few_shot_prompt(questions: Sequence[Question], index: int, num_shots: int, seed: int,
                    pools: dict[str, list[int]] | None = None) -> str:
    demos = demonstrations(questions, index, num_shots, seed, pools)
    return "\n".join([f"{d.prompt} {d.answers[0]}" for d in demos] + [questions[index].prompt])


def evaluate_questions(model: LoadedCheckpoint, questions: Sequence[Question], config: LeakageConfig,
                       log: Callable[[str], None] = print, name: str = "") -> dict:
    """Fact leakage of `model` on the first `config.limit` of `questions`."""
    n = len(questions) if config.limit is None else min(config.limit, len(questions))
    pools = relation_pools(questions)
    prompts = [few_shot_prompt(questions, i, config.num_shots, config.seed, pools) for i in range(n)]
    gen_config = CascadeConfig(max_new_tokens=config.max_new_tokens, repetition_penalty=config.repetition_penalty,
                               calls=False)
    outputs = []
    for start in range(0, n, config.chunk_size):
        outputs += [g.text.split("\n", 1)[0] for g in generate(model, prompts[start:start + config.chunk_size], None, gen_config)]
        log(f"fact leakage {name}: {len(outputs)}/{n} questions")
    questions = questions[:n]
    aliases = [answer_aliases(q.answers) for q in questions]
    in_prompt = [states_answer(q.prompt, a) for q, a in zip(questions, aliases)]
    scored = [bool(a) and not p for a, p in zip(aliases, in_prompt)]
    hits = [states_answer(out, a) for out, a in zip(outputs, aliases)]
    by_relation = defaultdict(list)
    for hit, q, s in zip(hits, questions, scored):
        if s:
            by_relation[q.relation].append(hit)
    scored_hits = [h for h, s in zip(hits, scored) if s]
    return {
        "questions": n,
        "scored": len(scored_hits),
        "contained": int(sum(scored_hits)),
        "leakage": float(np.mean(scored_hits)) if scored_hits else 0.0,
        "contained_by_question": [int(h) if s else None for h, s in zip(hits, scored)],  # None: not scored
        "answer_rule": answer_rule_counts(questions, aliases, in_prompt),
        "by_relation": {r: {"questions": len(h), "leakage": float(np.mean(h))} for r, h in sorted(by_relation.items())},
        "examples": [{"prompt": q.prompt, "output": out, "answers": list(q.answers), "contained": hit, "scored": s}
                     for q, out, hit, s in list(zip(questions, outputs, hits, scored))[:5]],
    }


def answer_rule_counts(questions: Sequence[Question], aliases: Sequence[tuple[Alias, ...]],
                       in_prompt: Sequence[bool]) -> dict[str, int]:
    """How many questions the matching rule touches: some alias not used (one character or
    a stop word), some alias matched as a case-sensitive code, no alias left (not scored),
    an answer stated by the question's own prompt (not scored)."""
    return {
        "questions_losing_aliases": sum(any(alias(x) is None for x in q.answers) for q in questions),
        "questions_with_codes": sum(any(x.cased for x in a) for a in aliases),
        "questions_without_aliases": sum(not a for a in aliases),
        "prompt_states_answer": sum(p for p, a in zip(in_prompt, aliases) if a),
    }


def evaluate_leakage(model: str | Path | LoadedCheckpoint, config: LeakageConfig = LeakageConfig(),
                     log: Callable[[str], None] = print) -> dict:
    """Fact leakage on PopQA long tail and BigBench qa_wikidata, `<CALL>` at -inf."""
    model = model if isinstance(model, LoadedCheckpoint) else load_checkpoint(model)
    result = {
        "popqa": evaluate_questions(model, load_popqa(config.popqa_path), config, log, "popqa"),
        "bigbench_qa_wikidata": evaluate_questions(model, load_bigbench(config.bigbench_path), config, log, "bigbench"),
        "config": asdict(config),
        "checkpoint": model.identity(),
        "data_sha256": {k: file_sha256(getattr(config, k)) for k in ("popqa_path", "bigbench_path")},
        "code_fingerprint": code_fingerprint(sys.modules[__name__], cascade, partners, checkpoint),
    }
    result["fingerprint"] = fingerprint(result["checkpoint"]["fingerprint"], result["data_sha256"], result["config"],
                                        result["code_fingerprint"])
    return result
