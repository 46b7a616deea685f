import pytest

from evaluation.factscore.human import (
    SOURCES,
    human_factscores,
    label_counts,
    labeled_facts,
    read_labeled,
    validate_judge,
)
from evaluation.factscore.knowledge import BM25Retrieval, KnowledgeSource, build_knowledge_db
from evaluation.factscore.metric import support_prompt
from pipelines.corpus import read_source
from tests.evaluation.factscore.factscore_fixtures import ScriptedLLM

RECORD = {
    "topic": "X",
    "output": "...",
    "annotations": [
        {"text": "s1", "is-relevant": True, "human-atomic-facts": [
            {"text": "a", "label": "S"}, {"text": "b", "label": "NS"}, {"text": "c", "label": "IR"}]},
        {"text": "s2", "is-relevant": False, "human-atomic-facts": None, "model-atomic-facts": [{"text": "d"}]},
    ],
}  # fmt: skip


def test_labeled_facts_by_hand():
    assert labeled_facts(RECORD, "exclude") == [("a", True), ("b", False)]
    assert labeled_facts(RECORD, "not_supported") == [("a", True), ("b", False), ("c", False), ("d", False)]
    assert labeled_facts({**RECORD, "annotations": None}) is None
    assert label_counts([RECORD]) == {"S": 1, "NS": 1, "IR": 1}
    with pytest.raises(ValueError):
        labeled_facts(RECORD, "other")


def test_human_factscores_reproduce_the_factscore_paper():
    """Counting IR facts (and the facts of irrelevant sentences) as not supported gives the
    paper's human FactScores (InstructGPT 42.5, ChatGPT 58.3, PerplexityAI 71.5, no length
    penalty) to within 0.12, and its responding shares (157, 182 and 166 of 183)."""
    paper = human_factscores(gamma=0, irrelevant="not_supported")
    for source, expected_responded in zip(SOURCES, (157, 182, 166)):
        result = paper[source]
        assert abs(100 * result["init_score"] - result["paper_score"]) < 0.15, source
        assert result["num_generations"] == 183 and result["num_responded"] == expected_responded
    assert paper["ChatGPT"]["labels"] == {"S": 3194, "NS": 1692, "IR": 540}
    # S / (S + NS), IR excluded, with the length penalty gamma = 10
    excluded = human_factscores(gamma=10, irrelevant="exclude")
    assert {s: round(100 * r["score"], 2) for s, r in excluded.items()} == {
        "ChatGPT": 62.15, "InstructGPT": 46.98, "PerplexityAI": 83.34}  # fmt: skip
    assert {s: round(100 * r["init_score"], 2) for s, r in excluded.items()} == {
        "ChatGPT": 62.33, "InstructGPT": 47.39, "PerplexityAI": 84.02}  # fmt: skip


@pytest.fixture(scope="module")
def three_leads(tmp_path_factory):
    """The only 3 of the 183 entities with text in the repo: lead sections (ovos)."""
    topics = {"Osama bin Laden", "António de Oliveira Salazar", "Robert Louis Stevenson"}
    path = tmp_path_factory.mktemp("leads") / "leads.db"
    build_knowledge_db(path, [(r.title, r.text) for r in read_source("embedded:wikipedia-leads") if r.title in topics])
    return KnowledgeSource(path)


def test_validate_judge_with_test_doubles(three_leads):
    always_true = ScriptedLLM(lambda p: "True")
    result = validate_judge(always_true, three_leads, sources=("ChatGPT",))
    chatgpt = result["sources"]["ChatGPT"]
    records = [r for r in read_labeled("ChatGPT") if r["topic"] in three_leads]
    assert chatgpt["num_generations"] == len(records) == 3
    assert chatgpt["num_missing_knowledge"] == 180
    facts = [labeled_facts(r) for r in records]
    human = [sum(s for _, s in fs) / len(fs) for fs in facts if fs]
    assert chatgpt["human_init_score"] == pytest.approx(sum(human) / len(human))
    assert chatgpt["init_score"] == 1.0  # every fact judged supported
    assert chatgpt["error"] == pytest.approx(chatgpt["factscore"] - chatgpt["human_factscore"])
    assert chatgpt["fact_agreement"] == pytest.approx(chatgpt["human_supported_ratio"])
    assert chatgpt["num_facts"] == sum(len(fs or []) for fs in facts) == len(always_true.prompts)
    topic, (fact, _) = records[0]["topic"], facts[0][0]
    passages = BM25Retrieval(three_leads).get_passages(topic, fact, 5)
    assert always_true.prompts[0] == support_prompt(topic, fact, passages)

    always_false = ScriptedLLM(lambda p: "False")
    assert validate_judge(always_false, three_leads, sources=("ChatGPT",))["sources"]["ChatGPT"]["factscore"] == 0.0
    limited = validate_judge(always_false, three_leads, sources=("ChatGPT",), limit=50)["sources"]["ChatGPT"]
    in_first_50 = sum(r["topic"] in three_leads for r in read_labeled("ChatGPT")[:50])
    assert (limited["num_records"], limited["num_generations"]) == (50, in_first_50)
