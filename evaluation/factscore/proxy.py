"""The fact-overlap proxy: a lexical stand-in for FactScore where no judge LLM is
available (the embedded default on a CPU machine). It is not FactScore and is never
reported as such.

The claims of a generation are its factual spans as our own fact labeler finds them
(`pipelines.facts.FactLabeler`, A.2.1: runs of consecutive words labelled `fact`), minus
spans that only repeat the topic's name (given by the prompt). A span is supported when,
normalized (NFKC, lower case, punctuation as spaces), it appears as a whole-word sequence
in one of the top passages that BM25 retrieves from the topic's article for
`topic + " " + span` (FactScore's retrieval). Scores are aggregated exactly as FactScore
aggregates facts: the same gamma length penalty and abstention rules.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from evaluation.factscore.knowledge import BM25Retrieval, KnowledgeSource, passage_plain_text
from evaluation.factscore.metric import GAMMA, N_PASSAGES, aggregate, is_response_abstained
from pipelines.classes import FACT
from pipelines.facts import FactLabeler, WordLabels
from pipelines.files import fingerprint

METRIC = "fact_overlap_proxy"
_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split())


def fact_spans(text: str, labels: WordLabels) -> list[str]:
    """Runs of consecutive `fact` words, as the text from the first word's start to the
    last word's end."""
    spans, start, end = [], None, None
    for s, e, c in zip(labels.start.tolist(), labels.end.tolist(), labels.cls.tolist()):
        if c == FACT:
            start = s if start is None else start
            end = e
        elif start is not None:
            spans.append(text[start:end])
            start = None
    if start is not None:
        spans.append(text[start:end])
    return spans


def is_span_supported(span: str, passages: Sequence[dict[str, str]]) -> bool:
    needle = f" {normalize(span)} "
    return needle.strip() != "" and any(needle in f" {normalize(passage_plain_text(p['text']))} " for p in passages)


def fact_overlap_proxy(
    topics: Sequence[str],
    generations: Sequence[str],
    knowledge: KnowledgeSource,
    labeler: FactLabeler | None = None,
    gamma: int = GAMMA,
    n_passages: int = N_PASSAGES,
    abstain_detection: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """The proxy over generations about `topics` (titles in `knowledge`). Returns
    `aggregate`'s keys (score, init_score, respond_ratio, abstention_ratio, num_facts =
    spans, num_supported, ...), `metric`, and `generations` [{topic, abstained, spans:
    [{span, is_supported}], score, ...}]."""
    if len(topics) != len(generations):
        raise ValueError(f"{len(topics)} topics but {len(generations)} generations")
    missing = sorted({t for t in topics if t not in knowledge})
    if missing:
        raise KeyError(f"{knowledge.path}: no document for topics {missing[:10]} ({len(missing)} in all)")
    labeler = labeler or FactLabeler()
    retrieval = BM25Retrieval(knowledge)
    abstained = [is_response_abstained(g, abstain_detection) for g in generations]
    labels = labeler.label_texts([("" if a else g) for a, g in zip(abstained, generations)])
    per_generation = []
    for topic, generation, abstain, words in zip(topics, generations, abstained, labels):
        if abstain:
            per_generation.append(None)
            continue
        name = f" {normalize(topic)} "
        spans = [s for s in fact_spans(generation, words) if f" {normalize(s)} " not in name]
        per_generation.append(
            [
                {"span": s, "is_supported": is_span_supported(s, retrieval.get_passages(topic, s, n_passages))}
                for s in spans
            ]
        )
    if log:
        log(f"{METRIC}: {sum(len(p or []) for p in per_generation)} spans in {len(generations)} generations")
    result = aggregate([None if p is None else [x["is_supported"] for x in p] for p in per_generation], gamma)
    result["generations"] = [
        {"topic": t, "abstained": not p, "abstain_detected": a, "spans": p, **(g or {})}
        for t, a, p, g in zip(topics, abstained, per_generation, result["per_generation"])
    ]
    del result["per_generation"]
    result["metric"] = METRIC
    result["config"] = {"gamma": gamma, "n_passages": n_passages, "abstain_detection": abstain_detection}
    result["fingerprint"] = fingerprint(METRIC, result["config"], list(topics), list(generations), knowledge.identity)
    return result
