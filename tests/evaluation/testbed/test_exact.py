"""Exact scorers of the synthetic world, on hand-worked texts and on the world's own documents."""

import pytest

from evaluation.checkpoint import load_checkpoint, write_random_checkpoint
from evaluation.testbed.cell import EvalConfig
from evaluation.testbed.evaluate import attribute_leakage, call_decisions, generations
from evaluation.testbed.exact import KnowledgeBase, atomic_facts, precision, questions
from evaluation.testbed.kinds import TOKEN_KINDS
from evaluation.testbed.oracle import OraclePartner
from pipelines.biographies import CITIES, SyntheticConfig, generate_world, write_beside_corpus
from tests.evaluation.testbed.worlds import SMALL, knowledge_base_of

MARY = {"person_id": 0, "name": "Mary Smith", "gender": "female", "birth_date": "March 3, 1970", "birth_city": "Lyon",
        "birth_country": "France", "university": "Marston College", "field": "law", "employer": "Ivers Labs",
        "employer_city": "Porto", "documents": 1, "train_documents": 1, "bucket": "tail"}
STRUCTURE = {"employers": {"Ivers Labs": "Porto", "Selwyn Energy": "Lyon"}, "cities": CITIES,
             "source": SMALL.source()}


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase([MARY], STRUCTURE)


def test_atomic_facts_by_hand(kb):
    person = kb.people["Mary Smith"]
    text = ("Mary Smith was born on March 3, 1970 in Lyon, France. She studied law at Brookfield University. "
            "She works for Selwyn Energy, a company based in Lyon. Her home is Porto.")
    facts = [(f.attribute, f.value, f.supported) for f in atomic_facts(text, person, kb)]
    assert facts == [
        ("birth_date", "March 3, 1970", True),
        ("birth_city", "Lyon", True),
        ("country", "France", True),  # Lyon's country
        ("field", "law", True),
        ("university", "Brookfield University", False),  # Marston College
        ("employer", "Selwyn Energy", False),  # Ivers Labs
        ("employer_city", "Lyon", True),  # Selwyn Energy's headquarters: a true structural fact
        ("city", "Porto", True),  # no cue in its sentence: either of her cities
    ]


def test_cues_and_structure_decide_cities_and_countries(kb):
    person = kb.people["Mary Smith"]
    facts = atomic_facts("Born in Osaka, Germany, she is employed by Ivers Labs in Lyon.", person, kb)
    assert [(f.attribute, f.value, f.supported) for f in facts] == [
        ("birth_city", "Osaka", False), ("country", "Germany", False),  # Osaka is in Japan
        ("employer", "Ivers Labs", True), ("employer_city", "Lyon", False)]  # Ivers Labs is in Porto
    assert atomic_facts("Mary Smith was born on March 1970.", person, kb) == []  # not a full date


def test_precision_by_hand(kb):
    person = kb.people["Mary Smith"]
    gens = [
        "Mary Smith was born on March 3, 1970 in Lyon, France. She studied law at Brookfield University. "
        "She works for Selwyn Energy, a company based in Lyon. Her home is Porto.",  # 6 of 8 supported
        "Mary Smith is a native of Osaka, Germany.",  # 0 of 2
        "Mary Smith likes cats.",  # no fact: not scored
    ]
    result = precision(gens, [person] * 3, kb)
    assert result["responded"] == 2
    assert result["precision"] == pytest.approx((6 / 8 + 0) / 2)
    assert result["pooled_precision"] == pytest.approx(6 / 10)
    assert result["facts_per_generation"] == pytest.approx(10 / 3)
    assert result["by_attribute"]["birth_city"] == {"stated": 2, "supported": 1, "precision": 0.5}


def test_questions_by_hand(kb):
    qs = questions([kb.people["Mary Smith"]])
    assert [(q.prompt, q.answers, q.relation) for q in qs] == [
        ("Mary Smith was born on", ("March 3, 1970",), "birth_date"),
        ("Mary Smith was born in", ("Lyon",), "birth_city"),
        ("Mary Smith graduated from", ("Marston College",), "university"),
        ("Mary Smith studied", ("law",), "field"),
        ("Mary Smith works for", ("Ivers Labs",), "employer"),
    ]


def test_a_models_evaluation_runs_on_a_random_model(world_tokenizer, tmp_path):
    """Plumbing only: a random model's numbers mean nothing, but every part must run and
    count consistently, unit by unit."""
    write_beside_corpus([STRUCTURE["source"]], tmp_path)
    kb = KnowledgeBase.load(tmp_path / "knowledge_base")
    model = load_checkpoint(write_random_checkpoint(tmp_path / "ckpt", world_tokenizer.path))
    config = EvalConfig(head_people=3, tail_people=3, max_new_tokens=8, leakage_people=2, call_documents=4)
    result = generations(model, kb, {"oracle": OraclePartner(kb, world_tokenizer)}, config, log=lambda _: None)
    head = result["head"]
    assert set(head) == {"person_id", "no_call", "oracle"} and head["no_call"]["calls"]["calls"] == 0
    assert len(head["person_id"]) == len(head["oracle"]["stated_by_generation"]) == len(head["oracle"]["supported_by_generation"])
    assert 0 < head["oracle"]["calls"]["call_rate"] <= 1
    leakage = attribute_leakage(model, kb, config, log=lambda _: None)
    assert leakage["head"]["questions"] == 10 and len(leakage["head"]["contained_by_question"]) == 10
    world = generate_world(SyntheticConfig.from_source(kb.source))
    decisions = call_decisions(model, kb, world, config)["tail"]
    assert decisions["documents"] >= 1 and 0 <= decisions["calls_on_values"] <= 1
    assert set(decisions["called"]) <= set(TOKEN_KINDS)


STATED_AS = {"birth_country": "country"}  # the attribute a value span is stated as


def test_every_gold_document_scores_one_and_states_every_value(default_world):
    """The world's own documents: precision 1.000 on every attribute, and every value span
    is found as a fact of its attribute at its place (recall 1)."""
    kb = knowledge_base_of(default_world)
    people = {p.person_id: p for p in default_world.people}
    docs = default_world.documents
    result = precision([d.text for d in docs], [people[d.person_id] for d in docs], kb)
    assert result["precision"] == 1.0
    assert {a: r["precision"] for a, r in result["by_attribute"].items()} == {
        a: 1.0 for a in ("birth_date", "birth_city", "country", "university", "field", "employer", "employer_city")}
    for doc in docs:
        found = {(f.attribute, f.start, f.value) for f in atomic_facts(doc.text, people[doc.person_id], kb)}
        spans = {(STATED_AS.get(s.attribute, s.attribute), s.start, doc.text[s.start:s.end]) for s in doc.spans}
        assert found == spans, doc.doc_id


def test_names_are_built_from_the_worlds_stems(kb):
    """A university or employer name made of the world's stems and forms is stated, true or
    not (the model's recombinations); a word that is no stem starts none."""
    person = kb.people["Mary Smith"]  # Marston College, Ivers Labs
    text = ("At Marston College, Mary Smith chose law as her subject. She studied at Brookfield College and "
            "University of Marston. She works for Ivers Dynamics, then Marston Labs, then Halvorsen University. "
            "At University of Everett she met Quillon Labs.")
    facts = [(f.attribute, f.value, f.supported) for f in atomic_facts(text, person, kb)]
    assert facts == [
        ("university", "Marston College", True), ("field", "law", True),
        ("university", "Brookfield College", False),  # Brookfield University's stem, another form
        ("university", "University of Marston", False),
        ("employer", "Ivers Dynamics", False),  # Ivers Labs' stem, another suffix
        ("employer", "Marston Labs", False),  # a university's stem with an employer's suffix
        ("university", "Halvorsen University", False),  # an employer's stem as a university
        ("university", "University of Everett", False),  # "At" starts no name
        ("employer", "Quillon Labs", False),
    ]
    assert atomic_facts("At University she met Acme Labs and Big College.", person, kb) == []  # no stems
