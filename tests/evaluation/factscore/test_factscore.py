import math

import pytest

from evaluation.backends.text import truncate_at_stop
from evaluation.factscore.knowledge import BM25Retrieval
from evaluation.factscore.metric import (
    FactScoreConfig,
    aggregate,
    factscore,
    is_response_abstained,
    judge_support,
    length_penalty,
    parse_support,
    support_prompt,
)
from tests.evaluation.factscore.factscore_fixtures import ScriptedLLM, small_knowledge


def test_support_prompt_by_hand():
    passages = [
        {"title": "Ralph Earl", "text": "<s>Ralph Earl Ralph Earl was a painter.</s>"},
        {"title": "Ralph Earl", "text": "<s>Early life. He was born in 1751</s><s>Career"},
    ]
    # best passage last, <s>/</s> removed, "." added when the context ends without punctuation
    assert support_prompt("Ralph Earl", " He was a painter. ", passages) == (
        "Answer the question about Ralph Earl based on the given context.\n\n"
        "Title: Ralph Earl\nText: Early life. He was born in 1751Career\n\n"
        "Title: Ralph Earl\nText: Ralph Earl Ralph Earl was a painter.\n\n"
        "Input: He was a painter. True or False?\nOutput:"
    )
    assert "Text: Early life. He was born in 1751Career.\n\nInput: X True" in support_prompt(
        "Ralph Earl", "X", passages[::-1]
    )


@pytest.mark.parametrize(
    ("answer", "supported"),
    [
        ("True", True),
        (" False.", False),
        ("TRUE. The context says so.", True),
        ("true, not false", False),  # both: supported iff the first "true" comes after the first "false"
        ("False ... but it is true that", True),
        ("I cannot tell.", False),
        ("Not enough information", False),
        ("Yes", True),  # neither true nor false, and no negative word
        ("", True),
    ],
)
def test_parse_support_as_factscore(answer, supported):
    assert parse_support(answer) is supported


def test_length_penalty_by_hand():
    assert length_penalty(4, 10) == pytest.approx(math.exp(1 - 2.5))
    assert length_penalty(10, 10) == 1.0  # exp(1 - 10/10)
    assert length_penalty(11, 10) == 1.0
    assert length_penalty(1, 0) == 1.0  # gamma 0: no penalty
    assert length_penalty(1, 10) == pytest.approx(math.exp(-9))


def test_aggregate_by_hand():
    result = aggregate([[True, True, False, False], [True] * 12, None, [True] * 10, []], gamma=10)
    first = 0.5 * math.exp(-1.5)  # 4 facts: penalty exp(1 - 10/4)
    assert result["score"] == pytest.approx((first + 1 + 1) / 3)
    assert result["init_score"] == pytest.approx((0.5 + 1 + 1) / 3)
    assert result["respond_ratio"] == pytest.approx(3 / 5)  # None and [] both count as abstained
    assert result["abstention_ratio"] == pytest.approx(2 / 5)
    assert (result["num_facts"], result["num_supported"], result["num_facts_per_response"]) == (26, 24, 26 / 3)
    assert result["per_generation"][0]["penalty"] == pytest.approx(math.exp(-1.5))
    assert result["per_generation"][2] is None
    no_penalty = aggregate([[True, True, False, False]], gamma=0)
    assert no_penalty["score"] == no_penalty["init_score"] == 0.5
    assert aggregate([None], gamma=10)["score"] is None


def test_abstention_detection_as_factscore():
    assert is_response_abstained("I'm sorry, I could not find this person.", "generic")
    assert is_response_abstained("Could you provide more context?", "generic")
    assert not is_response_abstained("Ralph Earl is a painter.", "generic")
    assert not is_response_abstained("I'm sorry, I could not find this person.", None)
    assert is_response_abstained("I could not find any information about him [1].", "perplexity_ai")
    # an invalid paragraph after a valid one does not make the response an abstention
    valid_first = "Ralph Earl was a painter[1].\n\nThere is no information on his wife."
    assert not is_response_abstained(valid_first, "perplexity_ai")
    assert is_response_abstained("He is a person. There is no information about him.", "perplexity_ai")
    with pytest.raises(ValueError):
        is_response_abstained("x", "other")
    with pytest.raises(ValueError):
        FactScoreConfig(abstain_detection="other")


def test_judge_support_sends_factscore_prompts(tmp_path):
    ks = small_knowledge(tmp_path)
    retrieval = BM25Retrieval(ks)
    judge = ScriptedLLM(lambda p: "True" if "Polish" in p.split("Input:")[1] else "False")
    claims = [
        ("Marie Curie", "Marie Curie was Polish."),
        ("Ralph Earl", "Ralph Earl was Polish."),
        ("Ralph Earl", "He was tall."),
    ]
    decisions = judge_support(claims, retrieval, judge, n_passages=5, max_new_tokens=7)
    assert [d["is_supported"] for d in decisions] == [True, True, False]
    assert judge.calls[0][1:] == (7, ())
    assert judge.prompts[1] == support_prompt("Ralph Earl", "Ralph Earl was Polish.", ks.passages("Ralph Earl"))


def _fact_llm(facts_by_sentence):
    def answer(prompt):
        sentence = prompt.rsplit("independent facts: ", 1)[1]
        bullets = "".join(f"\n- {f}" for f in facts_by_sentence.get(sentence, []))
        return truncate_at_stop(bullets + "\n\nPlease", ["\n\n"])

    return ScriptedLLM(answer, name="fact-test-double")


def test_factscore_pipeline_with_test_doubles(tmp_path):
    ks = small_knowledge(tmp_path)
    fact_llm = _fact_llm(
        {
            "Ralph Earl is an American painter.": ["Ralph Earl is American.", "Ralph Earl is a painter."],
            "He was born in Paris.": ["He was born in Paris."],
            "Marie Curie is a singer.": [],
        }
    )
    supported = {"Ralph Earl is American.", "Ralph Earl is a painter."}
    judge = ScriptedLLM(lambda p: "True" if p.split("Input: ")[1].split(" True or False?")[0] in supported else "False")
    result = factscore(
        ["Ralph Earl", "Ralph Earl", "Marie Curie"],
        [
            "Ralph Earl is an American painter. He was born in Paris.",
            "I'm sorry, I don't know him.",
            "Marie Curie is a singer.",
        ],
        ks,
        fact_llm,
        judge,
        FactScoreConfig(abstain_detection="generic"),
    )
    assert len(fact_llm.calls) == 1 and len(fact_llm.prompts) == 3  # the apology is never broken down
    assert judge.prompts == [
        support_prompt("Ralph Earl", atom, BM25Retrieval(ks).get_passages("Ralph Earl", atom, 5))
        for atom in ("Ralph Earl is American.", "Ralph Earl is a painter.", "He was born in Paris.")
    ]
    assert result["score"] == pytest.approx(2 / 3 * math.exp(1 - 10 / 3))
    assert result["init_score"] == pytest.approx(2 / 3)
    assert result["respond_ratio"] == pytest.approx(1 / 3)
    assert (result["num_facts"], result["num_supported"], result["num_abstained"]) == (3, 2, 2)
    first, apology, no_facts = result["generations"]
    assert [d["is_supported"] for d in first["decisions"]] == [True, True, False]
    assert first["sentences"][1] == {"sentence": "He was born in Paris.", "facts": ["He was born in Paris."]}
    assert apology["abstained"] and apology["abstain_detected"]
    assert no_facts["abstained"] and not no_facts["abstain_detected"]
    assert result["models"] == {"atomic_facts": "fact-test-double", "judge": judge.name}


def test_factscore_with_given_atomic_facts_and_missing_topics(tmp_path):
    ks = small_knowledge(tmp_path)
    judge = ScriptedLLM(lambda p: "True")
    result = factscore(["Marie Curie"], ["unused"], ks, None, judge, atomic_facts=[["a.", "b."]])
    assert result["init_score"] == 1.0 and result["score"] == pytest.approx(math.exp(1 - 5))
    with pytest.raises(KeyError, match="Ada Lovelace"):
        factscore(["Ada Lovelace"], ["x"], ks, None, judge, atomic_facts=[["a."]])
    with pytest.raises(ValueError, match="fact_llm or atomic_facts"):
        factscore(["Marie Curie"], ["x"], ks, None, judge)
