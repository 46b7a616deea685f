"""The oracle partner: every value of every gold document answered with the document's own
next token; paraphrases answered by their cues; non-value positions declined."""

import pytest

from evaluation.backends.partners import PartnerQuery
from evaluation.cascade.generate import CascadeConfig, PartnerTokenMap, generate
from evaluation.checkpoint import load_checkpoint, write_random_checkpoint
from evaluation.testbed.exact import KnowledgeBase
from evaluation.testbed.oracle import OraclePartner
from pipelines.biographies import CITIES
from tests.evaluation.testbed.worlds import knowledge_base_of

PERSON = {"documents": 1, "train_documents": 1, "bucket": "tail"}
MARY = {**PERSON, "person_id": 0, "name": "Mary Smith", "gender": "female", "birth_date": "March 3, 1970",
        "birth_city": "Lyon", "birth_country": "France", "university": "Marston College", "field": "law",
        "employer": "Ivers Labs", "employer_city": "Porto"}
JOHN = {**PERSON, "person_id": 1, "name": "John Brown", "gender": "male", "birth_date": "May 9, 1961",
        "birth_city": "Athens", "birth_country": "Greece", "university": "University of Westmoor", "field": "history",
        "employer": "Selwyn Energy", "employer_city": "Lyon"}
STRUCTURE = {"employers": {"Ivers Labs": "Porto", "Selwyn Energy": "Lyon"}, "cities": CITIES, "source": "unused"}
MARY_DOC = "Mary Smith\n\n"
JOHN_DOC = "John Brown\n\n"


@pytest.fixture(scope="module")
def oracle(world_tokenizer) -> OraclePartner:
    return OraclePartner(KnowledgeBase([MARY, JOHN], STRUCTURE), world_tokenizer)


def reply(partner, text: str) -> tuple[str, ...]:
    return partner.top_tokens([PartnerQuery(0, text)])[0].candidates


def test_every_value_of_every_gold_document_gets_its_next_token(small_world, world_tokenizer):
    """At the space before each value span and at every token boundary inside it, the
    oracle answers the gold document's own next token."""
    oracle = OraclePartner(knowledge_base_of(small_world), world_tokenizer)
    queries = 0
    for doc in small_world.documents:
        _, starts, ends = world_tokenizer.encode_with_offsets(doc.text)
        for span in doc.spans:
            for start, end in zip(starts.tolist(), ends.tolist()):
                if span.start - 1 <= start < span.end:
                    assert reply(oracle, doc.text[:start]) == (doc.text[start:end],), (doc.doc_id, span, doc.text[:start])
                    queries += 1
    assert queries > 7 * len(small_world.documents)


PARAPHRASES = [  # (text so far, slot, the value's text still to write)
    (MARY_DOC + "Mary Smith was born in", "birth_city", " Lyon"),
    (MARY_DOC + "She was born on", "birth_date", " March 3, 1970"),
    (MARY_DOC + "Her birthday is", "birth_date", " March 3, 1970"),
    (MARY_DOC + "Mary Smith, a native of", "birth_city", " Lyon"),
    (MARY_DOC + "Born in Lyon on", "birth_date", " March 3, 1970"),
    (MARY_DOC + "She was born in Osaka,", "country", " Japan"),  # the country of the city named
    (MARY_DOC + "Osaka,", "country", " Japan"),
    (MARY_DOC + "She studied", "field", " law"),
    (MARY_DOC + "She holds a degree in", "field", " law"),
    (MARY_DOC + "Her major was", "field", " law"),
    (MARY_DOC + "She is an alumna of", "university", " Marston College"),
    (MARY_DOC + "She graduated in 1992 from", "university", " Marston College"),
    (MARY_DOC + "After a degree at", "university", " Marston College"),
    (MARY_DOC + "She works at", "employer", " Ivers Labs"),
    (MARY_DOC + "Her employer is", "employer", " Ivers Labs"),
    (MARY_DOC + "She took a job at", "employer", " Ivers Labs"),
    (MARY_DOC + "She works for a firm located in", "headquarters", " Porto"),  # her employer's city
    (MARY_DOC + "She once joined Selwyn Energy in", "headquarters", " Lyon"),  # the named employer's
    (MARY_DOC + "She was born on March 3", "birth_date", ", 1970"),  # inside a value
    (MARY_DOC + "Mary Smith studied at Marston Col", "university", "lege"),
    (MARY_DOC + "Mary Smith is a lawyer. Her employer, Ive", "employer", "rs Labs"),
    (MARY_DOC + "She studied l", "field", "aw"),  # a field counts where it is due
    (JOHN_DOC + "At", "university", " University of Westmoor"),  # the template "At {university}", not Athens
    (JOHN_DOC + "He was born in At", "birth_city", "hens"),
]


@pytest.mark.parametrize(("text", "slot", "rest"), PARAPHRASES)
def test_paraphrases_are_answered(oracle, world_tokenizer, text, slot, rest):
    answer = oracle.answer(text)
    assert (answer.slot, answer.rest) == (slot, rest)
    sp = PartnerTokenMap(world_tokenizer).sp
    assert reply(oracle, text) == (sp.decode([sp.encode(rest)[0]]),)


@pytest.mark.parametrize("text", [
    MARY_DOC + "She enjoys",
    MARY_DOC + "She was born",  # "on" or "in": no value is due yet
    MARY_DOC + "She was born on June",  # not her value
    MARY_DOC + "She was born on March 3, 1970",  # the value is complete
    MARY_DOC + "She joined Harrowgate In",  # "In" is not "in"
    MARY_DOC + "M",  # the start of her name, not of March or Marston College
    JOHN_DOC + "He began his",  # "his" is not the start of history where no field is due
    MARY_DOC + "She studied law at Marston College in",  # a city or a year: nothing is due
    "Someone was born on",  # no known person
])
def test_non_value_positions_are_declined(oracle, text):
    assert oracle.answer(text) is None
    assert oracle.top_tokens([PartnerQuery(0, text)])[0].candidates == ()


def test_the_leading_space_is_written_only_when_missing(oracle):
    assert reply(oracle, MARY_DOC + "She was born in")[0].startswith(" ")
    assert not reply(oracle, MARY_DOC + "She was born in ")[0].startswith(" ")


def test_cascade_with_the_oracle_writes_the_true_value(oracle, world_tokenizer, tmp_path):
    model = load_checkpoint(write_random_checkpoint(tmp_path / "ckpt", world_tokenizer.path))
    config = CascadeConfig(max_new_tokens=24, call_budget=1.0)  # calls at every step
    gen = generate(model, ["Mary Smith\n\nMary Smith was born on"], oracle, config)[0]
    assert gen.segments[0] == (" March 3, 1970", True)
    value_tokens = len(world_tokenizer.encode("Mary Smith was born on March 3, 1970")) - len(world_tokenizer.encode("Mary Smith was born on"))
    assert gen.from_partner[:value_tokens] == [True] * value_tokens
