"""Fact leakage: the containment metric with aliases, the per-relation templates, the
3-shot demonstrations, and a run end to end."""

from __future__ import annotations

import pytest

from evaluation.checkpoint import load_checkpoint
from evaluation.measures.leakage import (
    COMPLETIONS,
    Alias,
    LeakageConfig,
    Question,
    answer_aliases,
    answer_rule_counts,
    contains_answer,
    demonstrations,
    evaluate_leakage,
    evaluate_questions,
    few_shot_prompt,
    load_bigbench,
    load_popqa,
    normalize,
    overlaps,
    states_answer,
)


def test_normalize():
    assert normalize("The U.S.A.,  an  Empire!") == "usa empire"
    assert normalize("The U.S.A.,  an  Empire!", lowercase=False) == "USA Empire"


@pytest.fixture(scope="module")
def popqa():
    """PopQA long-tail questions by subject (the embedded file, with its real aliases)."""
    return {q.prompt.rsplit("? ", 1)[0]: q for q in load_popqa()}


def test_aliases_codes_are_cased_stop_words_and_single_characters_dropped(popqa):
    india = popqa["In what country is Devanur"]
    assert india.answers == ("India", "Bharat", "Hindustan", "Bharatvarsh", "in", "IN", "Republic of India", "🇮🇳",
                             "IND", "Aryavratt")
    assert answer_aliases(india.answers) == (
        Alias("india", False), Alias("bharat", False), Alias("hindustan", False), Alias("bharatvarsh", False),
        Alias("IN", True), Alias("republic of india", False), Alias("🇮🇳", False),  # a flag is two code points
        Alias("IND", True), Alias("aryavratt", False))
    usa = answer_aliases(popqa["In what country is Union State Bank, Wisconsin"].answers)
    assert {a for a in usa if a.cased} == {Alias("USA", True), Alias("US", True)}  # "U.S.A.", "the US", "U.S" ...
    assert Alias("us", False) not in usa


# Outputs as the models write them; the aliases are PopQA's own.
@pytest.mark.parametrize(("subject", "output", "expected"), [
    ("In what country is Devanur", "a small in the", False),  # the false positive on lacy_model: "in" is not India
    ("In what country is Devanur", "a village in India", True),
    ("In what country is Devanur", "Tamil Nadu, IN", True),  # the code as written
    ("In what country is Devanur", "a small village in the Indian state", False),  # "Indian" is not "India"
    ("In what country is Edmundston", "a city that can be found in the north", False),
    ("In what country is Edmundston", "New Brunswick, CAN.", True),
    ("In what country is Edmundston", "a small town in Canada", True),
    ("In what country is Gaustadalléen", "no longer a part of the city", False),
    ("In what country is Gaustadalléen", "Norway", True),
    ("In what country is Wiesau", "a village in the Free State of Bavaria, de facto", False),  # "de" is an ISO code
    ("In what country is Wiesau", "a municipality in the district of Tirschenreuth, DE", True),
    ("In what country is Ježov", "a village in the ČR", True),  # a code of non-ASCII capitals
    ("In what country is Centre", "to be the capital of the region", False),
    ("In what country is Centre", "Brussels, BE", True),
    ("In what country is Union State Bank, Wisconsin", "a bank that told us about its loans", False),
    ("In what country is Union State Bank, Wisconsin", "a bank in the U.S. state of Wisconsin", True),
    ("In what country is Union State Bank, Wisconsin", "the United States of America", True),
])
def test_popqa_answers_count_only_when_stated(popqa, subject, output, expected):
    assert contains_answer(output, popqa[subject].answers) is expected


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


def test_answer_rule_counts_hand_worked(popqa):
    questions = [popqa["In what country is Devanur"],  # loses "in"; codes IN, IND
                 popqa["What sport does Kiribati men's national basketball team play"],  # prompt says "basketball"
                 popqa["What genre is The Take"],  # untouched
                 Question("The blood type of Rick Husband is", ("O",), "The blood type")]  # BigBench: one letter only
    aliases = [answer_aliases(q.answers) for q in questions]
    in_prompt = [states_answer(q.prompt, a) for q, a in zip(questions, aliases)]
    assert in_prompt == [False, True, False, False]  # "In what country" is not the code "IN"
    assert answer_rule_counts(questions, aliases, in_prompt) == {
        "questions_losing_aliases": 2, "questions_with_codes": 2, "questions_without_aliases": 1,
        "prompt_states_answer": 1}


def test_demonstrations_are_deterministic_same_relation_and_never_share_answers():
    qs = [Question(f"q{i}", (a,), "r") for i, a in enumerate(["rock", "punk rock", "jazz", "pop", "soul", "rock"])]
    qs.append(Question("other", ("blues",), "s"))
    demos = demonstrations(qs, 0, 3, seed=0)
    assert demos == demonstrations(qs, 0, 3, seed=0)
    assert {d.prompt for d in demos} == {"q2", "q3", "q4"}  # "punk rock" states "rock": skipped like "rock"
    assert "q0" not in {d.prompt for d in demonstrations(qs, 1, 3, seed=0)}  # either way round
    # too few of its own relation: filled from other relations
    assert {d.prompt for d in demonstrations(qs, 6, 3, seed=0)} <= {"q0", "q1", "q2", "q3", "q4", "q5"}
    prompt = few_shot_prompt(qs, 2, 3, seed=0)
    lines = prompt.split("\n")
    assert len(lines) == 4 and lines[-1] == "q2" and all(not line.startswith("q2") for line in lines[:-1])


def test_demonstration_whose_prompt_states_the_answer_is_skipped(popqa):
    team = popqa["What sport does Kiribati men's national basketball team play"]
    priddy = popqa["What sport does Bob Priddy play"]
    assert overlaps(team, priddy)  # the demonstration line would show "basketball"
    assert not overlaps(popqa["What genre is The Take"], popqa["In what country is Devanur"])


def test_no_popqa_demonstration_states_its_querys_answer():
    questions = load_popqa()
    for i in range(0, len(questions), 20):
        own = answer_aliases(questions[i].answers)
        for d in demonstrations(questions, i, 3, seed=0):
            assert not states_answer(f"{d.prompt} {d.answers[0]}", own), (questions[i], d)


def test_leakage_counts_answers_the_model_produces(trained_checkpoint):
    model = load_checkpoint(trained_checkpoint)  # continues "the cat" with "sat on the mat ..."
    questions = [Question("the cat", ("mat", "rug"), "a"), Question("the cat", ("dog",), "a"),
                 Question("the cat sat on", ("the mat",), "b"),
                 Question("the cat", ("cat", "sat"), "b"),  # the prompt states "cat": not scored
                 Question("the cat", ("on", "O"), "b")]  # a stop word and one letter: no alias left, not scored
    out = evaluate_questions(model, questions, LeakageConfig(num_shots=0), log=lambda s: None)
    assert [e["contained"] for e in out["examples"]] == [True, False, True, True, False]  # "the mat" -> "mat"
    assert [e["scored"] for e in out["examples"]] == [True, True, True, False, False]
    assert out["examples"][0]["output"].startswith(" sat on the mat")
    assert (out["questions"], out["scored"], out["contained"]) == (5, 3, 2)
    assert out["leakage"] == pytest.approx(2 / 3)
    assert out["by_relation"] == {"a": {"questions": 2, "leakage": 0.5}, "b": {"questions": 1, "leakage": 1.0}}
    assert out["answer_rule"] == {"questions_losing_aliases": 1, "questions_with_codes": 0,
                                  "questions_without_aliases": 1, "prompt_states_answer": 1}


def test_evaluate_leakage_on_embedded_data(random_partner):
    # the 512-position stand-in: 3-shot PopQA prompts are long in the tiny test tokenizer
    result = evaluate_leakage(random_partner, LeakageConfig(limit=3, max_new_tokens=4), log=lambda s: None)
    for name in ("popqa", "bigbench_qa_wikidata"):
        assert result[name]["questions"] == 3 and 0 <= result[name]["leakage"] <= 1
        assert len(result[name]["examples"]) == 3
    assert result["checkpoint"]["method"] == "reference" and len(result["fingerprint"]) == 16
