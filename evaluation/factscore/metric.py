"""FactScore (Min et al. 2023; appendix B of the paper), reimplemented after FActScore's
`factscore/factscorer.py` ("retrieval+ChatGPT" with BM25 retrieval) for any `TextLLM`.

For each generation: optional abstention detection (`abstain_detection.py`), atomic facts
by an LLM (`evaluation.factscore.atomic_facts`), and for each fact the top-5 passages of the topic's
article by BM25 on `topic + " " + fact`, put in the support prompt

    Answer the question about {topic} based on the given context.\\n\\n
    Title: ...\\nText: ...\\n\\n(...5 passages, lowest-ranked first)\\n\\n
    Input: {fact} True or False?\\nOutput:

whose answer is parsed for "true"/"false". A generation's score is its fraction of
supported facts, times the length penalty exp(1 - gamma/n) when it has n <= gamma facts;
FactScore is the mean over the generations that did not abstain (a generation without
facts counts as abstained, as in FActScore), reported with the abstention ratio.

Deviations from FActScore: FActScore's default retriever for "retrieval+ChatGPT" is the
dense GTR-T5-large (its BM25 path serves the NPM variant); the paper's issue asks for
BM25, which needs no model download. FActScore's Llama judge compares the logits of
"True"/"False"; we parse the text answer for every backend (its ChatGPT path). The NPM
check is omitted. Judges are greedy (FActScore's ChatGPT used temperature 0.7).
"""

from __future__ import annotations

import math
import re
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from evaluation.backends.text import TextLLM
from evaluation.factscore.atomic_facts import AtomicFactGenerator
from evaluation.factscore.knowledge import BM25Retrieval, KnowledgeSource, passage_plain_text
from pipelines.files import fingerprint

GAMMA = 10  # factscorer.py --gamma default; the paper's setting
N_PASSAGES = 5  # factscorer.py: get_passages(topic, atom, k=5)
ABSTAIN_DETECTION = ("generic", "perplexity_ai")
# abstain_detection.py: PerplexityAI's ways of saying it found nothing
PERPLEXITY_INVALID = (
    "I could not find any information",
    "The search results do not provide",
    "There is no information",
    "There are no search results",
    "there are no provided search results",
    "not provided in the search results",
    "is not mentioned in the provided search results",
    "There seems to be a mistake in the question",
    "Not sources found",
    "No sources found",
    "Try a more general question",
)
NEGATIVE_WORDS = ("not", "cannot", "unknown", "information")  # factscorer.py, answer without true/false


@dataclass(frozen=True)
class FactScoreConfig:
    gamma: int = GAMMA  # 0 disables the length penalty
    n_passages: int = N_PASSAGES
    abstain_detection: str | None = None  # None (FActScore's default), "generic" or "perplexity_ai"
    fact_max_new_tokens: int = 256  # FActScore's InstructGPT call allowed 512, its local LM 128
    judge_max_new_tokens: int = 32  # the answer is parsed for "true"/"false" only

    def __post_init__(self) -> None:
        if self.abstain_detection not in (None, *ABSTAIN_DETECTION):
            raise ValueError(
                f"abstain_detection must be None or one of {ABSTAIN_DETECTION}, got {self.abstain_detection!r}"
            )
        if self.gamma < 0 or self.n_passages < 1:
            raise ValueError(f"gamma must be >= 0 and n_passages >= 1, got {self.gamma}, {self.n_passages}")


# ---------------------------------------------------------------- abstention


def remove_citation(text: str) -> str:
    text = re.sub(r"\s*\[\d+\]\s*", "", text)
    if text.startswith("According to , "):
        text = text.replace("According to , ", "According to the search results, ")
    return text


def is_response_abstained(generation: str, kind: str | None) -> bool:
    """abstain_detection.py `is_response_abstained`: "generic" is an apology or a request
    for more input; "perplexity_ai" is a search engine's "no information" before any
    valid paragraph; None never abstains."""
    if kind == "generic":
        return generation.startswith("I'm sorry") or "provide more" in generation
    if kind == "perplexity_ai":
        output = remove_citation(generation)
        if any(output.lower().startswith(m.lower()) for m in PERPLEXITY_INVALID):
            return True
        first = output.split("\n\n")[0]  # FActScore keeps the paragraphs before the first invalid one
        return not first.strip() or any(m.lower() in first.lower() for m in PERPLEXITY_INVALID)
    if kind is None:
        return False
    raise ValueError(f"unknown abstain detection {kind!r}; use None or one of {ABSTAIN_DETECTION}")


# ---------------------------------------------------------------- support judging


def support_prompt(topic: str, atom: str, passages: Sequence[dict[str, str]]) -> str:
    """factscorer.py `_get_score`: the retrieved passages in reverse order (best last),
    `<s>`/`</s>` removed, a period added if the context does not end in punctuation."""
    definition = f"Answer the question about {topic} based on the given context.\n\n"
    context = "".join(
        f"Title: {p['title']}\nText: {passage_plain_text(p['text'])}\n\n" for p in reversed(passages)
    )
    definition += context.strip()
    if definition[-1] not in string.punctuation:
        definition += "."
    return f"{definition.strip()}\n\nInput: {atom.strip()} True or False?\nOutput:".strip()


def parse_support(answer: str) -> bool:
    """factscorer.py: an answer with "true" and not "false" is supported, with "false" and
    not "true" it is not; with both, supported iff the first "true" comes after the first
    "false" (as FActScore decides it); with neither, supported unless it says "not",
    "cannot", "unknown" or "information"."""
    answer = answer.lower()
    has_true, has_false = "true" in answer, "false" in answer
    if has_true and not has_false:
        return True
    if has_false and not has_true:
        return False
    if has_true and has_false:
        return answer.index("true") > answer.index("false")
    words = answer.translate(str.maketrans("", "", string.punctuation)).split()
    return all(word not in words for word in NEGATIVE_WORDS)


def judge_support(
    claims: Sequence[tuple[str, str]],
    retrieval: BM25Retrieval,
    judge: TextLLM,
    n_passages: int = N_PASSAGES,
    max_new_tokens: int = 32,
) -> list[dict]:
    """Judge (topic, atom) claims against the topic's passages, all in one LLM call.
    Returns [{"atom", "is_supported", "answer"}] in order."""
    prompts = [support_prompt(topic, atom, retrieval.get_passages(topic, atom, n_passages)) for topic, atom in claims]
    answers = judge.generate(prompts, max_new_tokens) if prompts else []
    return [
        {"atom": atom.strip(), "is_supported": parse_support(answer), "answer": answer}
        for (_, atom), answer in zip(claims, answers)
    ]


# ---------------------------------------------------------------- scores


def length_penalty(num_facts: int, gamma: int = GAMMA) -> float:
    """factscorer.py: 1 when there are more than gamma facts, else exp(1 - gamma / n)."""
    if not gamma or num_facts > gamma:
        return 1.0
    return math.exp(1 - gamma / num_facts)


def aggregate(supported: Sequence[Sequence[bool] | None], gamma: int = GAMMA) -> dict:
    """FactScore over generations given, per generation, the support decisions of its
    facts, or None for a generation that abstained or had no facts.

    Returns `score` (mean penalized score over responding generations, None when none
    responded), `init_score` (the same without the length penalty), `respond_ratio`,
    `abstention_ratio`, counts, and `per_generation` [{score, init_score, penalty,
    num_facts, num_supported} or None]."""
    per_generation: list[dict | None] = []
    for decisions in supported:
        if decisions is None or len(decisions) == 0:
            per_generation.append(None)
            continue
        n, s = len(decisions), int(sum(bool(d) for d in decisions))
        penalty = length_penalty(n, gamma)
        per_generation.append(
            {"score": penalty * s / n, "init_score": s / n, "penalty": penalty, "num_facts": n, "num_supported": s}
        )
    responded = [g for g in per_generation if g is not None]
    total = len(per_generation)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return {
        "score": mean([g["score"] for g in responded]),
        "init_score": mean([g["init_score"] for g in responded]),
        "respond_ratio": len(responded) / total if total else None,
        "abstention_ratio": 1 - len(responded) / total if total else None,
        "num_generations": total,
        "num_responded": len(responded),
        "num_abstained": total - len(responded),
        "num_facts": sum(g["num_facts"] for g in responded),
        "num_supported": sum(g["num_supported"] for g in responded),
        "num_facts_per_response": mean([g["num_facts"] for g in responded]),
        "gamma": gamma,
        "per_generation": per_generation,
    }


def factscore(
    topics: Sequence[str],
    generations: Sequence[str],
    knowledge: KnowledgeSource,
    fact_llm: TextLLM | None,
    judge: TextLLM,
    config: FactScoreConfig = FactScoreConfig(),
    atomic_facts: Sequence[Sequence[str] | None] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """FactScore of `generations` about `topics` (titles in `knowledge`).

    `atomic_facts`, if given, replaces the fact generator (FActScore's
    `--use_atomic_facts`); otherwise `fact_llm` writes them. Returns `aggregate`'s keys
    plus `generations` (per generation: topic, abstained, sentences with their facts,
    decisions) and `config`, `models`, `timings_s`, `fingerprint`."""
    if len(topics) != len(generations):
        raise ValueError(f"{len(topics)} topics but {len(generations)} generations")
    missing = sorted({t for t in topics if t not in knowledge})
    if missing:
        raise KeyError(f"{knowledge.path}: no document for topics {missing[:10]} ({len(missing)} in all)")
    timings = {}
    start = time.perf_counter()
    abstained = [is_response_abstained(g, config.abstain_detection) for g in generations]
    sentences: list[list[tuple[str, list[str]]] | None] = [None] * len(generations)
    if atomic_facts is not None:
        if len(atomic_facts) != len(generations):
            raise ValueError(f"{len(atomic_facts)} atomic-fact lists but {len(generations)} generations")
        facts = [None if a or f is None else list(f) for a, f in zip(abstained, atomic_facts)]
    else:
        if fact_llm is None:
            raise ValueError("give either fact_llm or atomic_facts")
        todo = [i for i, a in enumerate(abstained) if not a]
        generator = AtomicFactGenerator(fact_llm, max_new_tokens=config.fact_max_new_tokens)
        for i, pairs in zip(todo, generator.run([generations[i] for i in todo], log=log)):
            sentences[i] = pairs
        facts = [None if s is None else [f for _, fs in s for f in fs] for s in sentences]
    timings["atomic_facts"] = time.perf_counter() - start

    start = time.perf_counter()
    claims = [(topics[i], atom) for i, fs in enumerate(facts) for atom in fs or []]
    if log:
        log(f"support: judging {len(claims)} facts of {sum(f is not None for f in facts)} generations")
    decisions = judge_support(
        claims, BM25Retrieval(knowledge), judge, config.n_passages, config.judge_max_new_tokens
    )
    timings["support"] = time.perf_counter() - start

    per_generation, cursor = [], 0
    for i, fs in enumerate(facts):
        n = len(fs or [])
        per_generation.append(decisions[cursor : cursor + n] if fs else None)
        cursor += n
    result = aggregate([None if d is None else [x["is_supported"] for x in d] for d in per_generation], config.gamma)
    result["generations"] = [
        {
            "topic": topic,
            "abstained": abstained[i] or not facts[i],
            "abstain_detected": abstained[i],
            "sentences": [{"sentence": s, "facts": fs} for s, fs in sentences[i]] if sentences[i] else None,
            "decisions": per_generation[i],
            **(result["per_generation"][i] or {}),
        }
        for i, topic in enumerate(topics)
    ]
    del result["per_generation"]
    result["config"] = asdict(config)
    fact_model = fact_llm.name if fact_llm and atomic_facts is None else None
    result["models"] = {"atomic_facts": fact_model, "judge": judge.name}
    result["timings_s"] = timings
    result["fingerprint"] = fingerprint(
        asdict(config), list(topics), list(generations), result["models"], knowledge.identity
    )
    return result
