import math

import numpy as np
import pytest

from evaluation.factscore.proxy import METRIC, fact_overlap_proxy, fact_spans, is_span_supported, normalize
from pipelines.classes import FACT, GRAMMATICAL, OTHER
from pipelines.facts import FactLabeler, WordLabels
from tests.evaluation.factscore.factscore_fixtures import small_knowledge, spacy_nlp


def test_fact_spans_group_consecutive_fact_words():
    text = "Ralph Earl is an American painter from Shrewsbury."
    words = ["Ralph", "Earl", "is", "an", "American", "painter", "from", "Shrewsbury", "."]
    starts = [text.index(w) if w != "." else len(text) - 1 for w in words]
    labels = WordLabels(
        start=np.array(starts, dtype=np.int32),
        end=np.array([s + len(w) for s, w in zip(starts, words)], dtype=np.int32),
        cls=np.array([FACT, FACT, GRAMMATICAL, GRAMMATICAL, FACT, FACT, GRAMMATICAL, FACT, GRAMMATICAL], dtype=np.int8),
        rule=np.zeros(len(words), dtype=np.int8),
    )
    assert fact_spans(text, labels) == ["Ralph Earl", "American painter", "Shrewsbury"]
    labels.cls[-1] = OTHER
    labels.cls[-2] = FACT
    assert fact_spans(text, labels)[-1] == "Shrewsbury"


def test_span_support_is_normalized_whole_word_containment():
    text = "<s>Ralph Earl (May 11, 1751 – August 16, 1801) was an American painter.</s><s>Niagara Falls"
    passages = [{"title": "Ralph Earl", "text": text}]
    assert normalize("  AMERICAN\tPainter, ") == "american painter"
    assert is_span_supported("american  painter", passages)
    assert is_span_supported("1751", passages)
    assert is_span_supported("Painter.Niagara-Falls", passages)  # "</s><s>" joins passages' paragraphs
    assert not is_span_supported("paint", passages)  # whole words only
    assert not is_span_supported("1752", passages)
    assert not is_span_supported("...", passages)


def test_fact_overlap_proxy_on_hand_made_generations(tmp_path):
    ks = small_knowledge(tmp_path)
    labeler = FactLabeler(nlp=spacy_nlp())
    result = fact_overlap_proxy(
        ["Ralph Earl", "Ralph Earl", "Marie Curie"],
        [
            "Ralph Earl is an American painter. He was born in 1751 in Paris.",
            "I'm sorry, I do not know Ralph Earl.",
            "Marie Curie is.",
        ],
        ks,
        labeler=labeler,
        abstain_detection="generic",
    )
    assert result["metric"] == METRIC == "fact_overlap_proxy"
    spans = {s["span"]: s["is_supported"] for s in result["generations"][0]["spans"]}
    assert "Ralph Earl" not in spans  # the name the prompt gave is not a claim
    assert spans["1751"] and spans["American painter"] and not spans["Paris"]
    n, s = len(spans), sum(spans.values())
    assert result["init_score"] == pytest.approx(s / n)
    assert result["score"] == pytest.approx(s / n * math.exp(1 - 10 / n))
    assert result["generations"][1]["abstained"] and result["generations"][1]["abstain_detected"]
    assert result["generations"][2]["abstained"] and not result["generations"][2]["abstain_detected"]
    assert result["abstention_ratio"] == pytest.approx(2 / 3)
    assert (result["num_facts"], result["num_supported"]) == (n, s)
    assert "factscore" not in str(sorted(result)).lower()
