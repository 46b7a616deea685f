"""Exact scorers and the knowledge-base partner of the synthetic world, on hand-worked texts."""

import pytest

from evaluation.backends.partners import PartnerQuery
from evaluation.cascade.generate import CascadeConfig, PartnerTokenMap, generate
from evaluation.checkpoint import load_checkpoint, write_random_checkpoint
from evaluation.testbed.exact import (
    KnowledgeBase,
    KnowledgeBasePartner,
    SyntheticEvalConfig,
    atomic_facts,
    evaluate_synthetic,
    precision,
    questions,
)
from pipelines.biographies import CITIES, SyntheticConfig, generate_world, write_beside_corpus
from pipelines.tokenizer import Tokenizer, TokenizerConfig, train_tokenizer

MARY = {"person_id": 0, "name": "Mary Smith", "gender": "female", "birth_date": "March 3, 1970", "birth_city": "Lyon",
        "birth_country": "France", "university": "Marston College", "field": "law", "employer": "Ivers Labs",
        "employer_city": "Porto", "documents": 1, "train_documents": 1, "bucket": "tail"}
STRUCTURE = {"employers": {"Ivers Labs": "Porto", "Selwyn Energy": "Lyon"}, "cities": CITIES,
             "source": "embedded:synthetic-bios?people=40&head_people=4&head_documents=6&seed=1"}


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase([MARY], STRUCTURE)


@pytest.fixture(scope="module")
def world_tokenizer(tmp_path_factory) -> Tokenizer:
    world = generate_world(SyntheticConfig.from_source(STRUCTURE["source"]))
    texts = [d.text for d in world.documents] + ["Mary Smith was born on March 3, 1970 in Lyon, France."] * 5
    return Tokenizer(train_tokenizer(texts, tmp_path_factory.mktemp("syn_tok"), TokenizerConfig(vocab_size=400)))


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


def test_knowledge_base_partner_decides_by_template_prefix(kb, world_tokenizer):
    partner = KnowledgeBasePartner(kb, world_tokenizer)
    start = "Mary Smith\n\n"
    assert partner.answer(start + "Mary Smith was born on") == " March 3, 1970"
    assert partner.answer(start + "Mary Smith was born on March 3") == ", 1970"
    assert partner.answer(start + "Mary Smith was born in Lyon,") == " France"
    assert partner.answer(start + "Mary Smith was born in Lyon. She studied") == " law"
    assert partner.answer(start + "Mary Smith was born in Lyon. She works for Ivers Labs, a company based in") == " Porto"
    assert partner.answer(start + "Mary Smith was born") is None  # "on" or "in": no value is being written
    assert partner.answer(start + "Mary Smith was born on June") is None  # not her value
    assert partner.answer(start + "Mary Smith was born on March 3, 1970") is None  # the value is complete
    assert partner.answer(start + "He studied") is None  # the wrong pronoun matches no template of hers
    assert partner.answer("Someone was born on") is None  # no known person
    reply = partner.top_tokens([PartnerQuery(0, start + "Mary Smith was born on")])[0]
    assert len(reply.candidates) == 1 and " March 3, 1970".startswith(reply.candidates[0])
    assert PartnerTokenMap(world_tokenizer).to_ours(reply.candidates[0]) is not None


def test_cascade_with_the_knowledge_base_partner_writes_the_true_value(kb, world_tokenizer, tmp_path):
    model = load_checkpoint(write_random_checkpoint(tmp_path / "ckpt", world_tokenizer.path))
    config = CascadeConfig(max_new_tokens=24, call_budget=1.0)  # calls at every step
    gen = generate(model, ["Mary Smith\n\nMary Smith was born on"], KnowledgeBasePartner(kb, world_tokenizer), config)[0]
    assert gen.segments[0] == (" March 3, 1970", True)
    value_tokens = len(world_tokenizer.encode("Mary Smith was born on March 3, 1970")) - len(world_tokenizer.encode("Mary Smith was born on"))
    assert gen.from_partner[:value_tokens] == [True] * value_tokens
    assert gen.declined_calls == gen.calls - value_tokens  # after the value the partner has no answer
    assert gen.rejected_calls == 0


def test_questions_by_hand(kb):
    qs = questions([kb.people["Mary Smith"]])
    assert [(q.prompt, q.answers, q.relation) for q in qs] == [
        ("Mary Smith was born on", ("March 3, 1970",), "birth_date"),
        ("Mary Smith was born in", ("Lyon",), "birth_city"),
        ("Mary Smith graduated from", ("Marston College",), "university"),
        ("Mary Smith studied", ("law",), "field"),
        ("Mary Smith works for", ("Ivers Labs",), "employer"),
    ]


def test_evaluate_synthetic_runs_end_to_end_on_a_random_model(world_tokenizer, tmp_path):
    """Plumbing only: a random model's numbers mean nothing, but every part must run and
    count consistently."""
    write_beside_corpus([STRUCTURE["source"]], tmp_path)
    kb = KnowledgeBase.load(tmp_path / "knowledge_base")
    model = load_checkpoint(write_random_checkpoint(tmp_path / "ckpt", world_tokenizer.path))
    config = SyntheticEvalConfig(people_per_bucket=3, max_new_tokens=8, leakage_people_per_bucket=2, call_documents=4)
    result = evaluate_synthetic(model, kb, {"knowledge_base": KnowledgeBasePartner(kb, world_tokenizer)}, config, log=lambda _: None)
    head = result["generations"]["head"]
    assert set(head) == {"no_call", "knowledge_base"} and head["no_call"]["calls"]["calls"] == 0
    assert 0 < head["knowledge_base"]["calls"]["call_rate"] <= 1
    assert result["leakage"]["head"]["questions"] == 10
    decisions = result["call_decisions"]["tail"]
    assert decisions["documents"] >= 1 and 0 <= decisions["calls_on_values"] <= 1
