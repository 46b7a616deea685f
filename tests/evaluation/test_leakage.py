"""Fact leakage: the containment metric with aliases, the per-relation templates, the
3-shot demonstrations, and a run end to end."""

from __future__ import annotations

import pytest

from evaluation.checkpoint import load_checkpoint
from evaluation.leakage import (
    COMPLETIONS,
    LeakageConfig,
    Question,
    contains_answer,
    demonstrations,
    evaluate_leakage,
    evaluate_questions,
    few_shot_prompt,
    load_bigbench,
    load_popqa,
    normalize,
)


def test_normalize():
    assert normalize("The U.S.A.,  an  Empire!") == "usa empire"


@pytest.mark.parametrize(("output", "answers", "expected"), [
    ("He was born in the U.S.A. in 1900", ["United States of America", "America", "U.S.A."], True),
    ("the United States of America.", ["United States of America"], True),
    ("She was an American painter", ["United States of America", "America"], False),  # not at a word boundary
    ("He joined the police", ["politician", "pol"], False),
    ("a political leader and writer", ["politician", "political leader"], True),  # an alias
    ("POP MUSIC", ["pop music", "pop"], True),
    ("rock", ["pop music", "pop"], False),
    ("anything", ["", "the"], False),  # answers that normalize to nothing never match
])
def test_contains_answer_with_aliases(output, answers, expected):
    assert contains_answer(output, answers) is expected


def test_popqa_prompts_use_a_template_per_relation():
    questions = load_popqa()
    assert len(questions) == 1399
    assert {q.relation for q in questions} <= set(COMPLETIONS)
    capital_of = next(q for q in questions if q.relation == "capital of")
    subj = capital_of.prompt.split(" the capital of?")[0].removeprefix("What is ")
    assert capital_of.prompt == f"What is {subj} the capital of? {subj} is the capital of"
    henry = questions[0]
    assert henry.prompt == "What is Henry Feilden's occupation? Henry Feilden's occupation is"
    assert henry.answers[:3] == ("politician", "political leader", "political figure")


def test_bigbench_targets_string_or_list():
    questions = load_bigbench()
    assert len(questions) == 20442
    assert questions[0] == Question('The genre of "Weird Al" Yankovic is', ("comedy", "parody"), "The genre")
    assert questions[1].answers == ("English",)


def test_demonstrations_are_deterministic_same_relation_and_never_share_answers():
    qs = [Question(f"q{i}", (a,), "r") for i, a in enumerate(["x", "x", "y", "z", "w", "x"])]
    qs.append(Question("other", ("v",), "s"))
    demos = demonstrations(qs, 0, 3, seed=0)
    assert demos == demonstrations(qs, 0, 3, seed=0)
    assert {d.prompt for d in demos} == {"q2", "q3", "q4"}  # the only same-relation ones without "x"
    # too few of its own relation: filled from other relations
    assert {d.prompt for d in demonstrations(qs, 6, 3, seed=0)} <= {"q0", "q1", "q2", "q3", "q4", "q5"}
    prompt = few_shot_prompt(qs, 2, 3, seed=0)
    lines = prompt.split("\n")
    assert len(lines) == 4 and lines[-1] == "q2" and all(not line.startswith("q2") for line in lines[:-1])


def test_leakage_counts_answers_the_model_produces(trained_checkpoint):
    model = load_checkpoint(trained_checkpoint)  # continues "the cat" with "sat on the mat ..."
    questions = [Question("the cat", ("mat", "rug"), "a"), Question("the cat", ("dog",), "a"),
                 Question("the cat sat on", ("the mat",), "b")]
    out = evaluate_questions(model, questions, LeakageConfig(num_shots=0), log=lambda s: None)
    assert [e["contained"] for e in out["examples"]] == [True, False, True]  # "the mat" normalizes to "mat"
    assert out["examples"][0]["output"].startswith("sat on the mat")
    assert out["leakage"] == pytest.approx(2 / 3)
    assert out["by_relation"] == {"a": {"questions": 2, "leakage": 0.5}, "b": {"questions": 1, "leakage": 1.0}}


def test_evaluate_leakage_on_embedded_data(random_partner):
    # the 512-position stand-in: 3-shot PopQA prompts are long in the tiny test tokenizer
    result = evaluate_leakage(random_partner, LeakageConfig(limit=3, max_new_tokens=4), log=lambda s: None)
    for name in ("popqa", "bigbench_qa_wikidata"):
        assert result[name]["questions"] == 3 and 0 <= result[name]["leakage"] <= 1
        assert len(result[name]["examples"]) == 3
    assert result["checkpoint"]["method"] == "reference" and len(result["fingerprint"]) == 16
