"""The exact acceptability judge: hand-worked cases, and every gold document's own tokens."""

from dataclasses import dataclass

import pytest

from evaluation.testbed.judge import ExactJudge
from pipelines.biographies import Document, Person, World
from tests.evaluation.testbed.worlds import SMALL

MARY = Person(0, "Mary Smith", "female", "March 3, 1970", "Lyon", "France", "Marston College", "law", "Ivers Labs", "Porto", 1)
TITLE = "Mary Smith\n\n"
BIRTH = "Mary Smith was born on March 3, 1970 in Lyon, France."
EDUCATION = "She studied law at Marston College."
CAREER = "She works for Ivers Labs, a company based in Porto."
FILLERS = ("She enjoys long walks on weekends.", "She often speaks at public events.", "She is known among colleagues for careful work.")


@dataclass(frozen=True)
class Query:
    doc_id: str
    starting_text: str
    proposed_next_token: str
    reference_next_token: str = ""


@pytest.fixture(scope="module")
def judge() -> ExactJudge:
    return ExactJudge(World(SMALL, (MARY,), {"Ivers Labs": "Porto"}, (Document("mary", 0, "Mary Smith", "", ()),)))


def verdict(judge, starting_text: str, token: str) -> int | None:
    return judge.judge([Query("mary", starting_text, token)])[0]


@pytest.mark.parametrize(("starting_text", "token", "expected"), [
    (TITLE + "Mary Smith was born on", " March", 1),  # her value
    (TITLE + "Mary Smith was born on March", " 3", 1),
    (TITLE + "Mary Smith was born on", " June", 0),  # a wrong value
    (TITLE + "Mary Smith was born on March 3, 1970 in", " Osaka", 0),
    (TITLE + "Mary Smith was born", " in", 1),  # a paraphrase the templates allow ("born in {birth_city}, ...")
    (TITLE + "Mary Smith", " (", 1),  # "(born {birth_date}) is a native of ..."
    (TITLE + "Mary Smith", "'s", 1),  # "'s birthplace is ..."
    (TITLE + "Mary Smith was born", " yesterday", 0),  # a word no template allows
    (TITLE + "Mary Smith", " enjoys", 0),
    (TITLE, "She", 0),  # the birth sentence comes first
    (TITLE, "Born", 1),
    ("", "Mary", 1), ("", " Mary", 0), ("Mary Smith", "\n", 1),  # the title line
    (TITLE + BIRTH, " She", 1),  # education, career or a filler next
    (TITLE + BIRTH, " His", 0),  # her pronouns are "She" and "Her"
    (TITLE + BIRTH, " He", 1),  # ... and " He" starts " Her employer, ..."
    (TITLE + BIRTH, " At", 1), (TITLE + BIRTH, " After", 1), (TITLE + BIRTH, " Colleagues", 1),
    (TITLE + BIRTH, ".", 0),
    (TITLE + BIRTH + " " + EDUCATION, " She studied", 0),  # education once
    (TITLE + BIRTH + " " + EDUCATION + " " + FILLERS[0] + " " + FILLERS[0][:-1], ".", 0),  # a filler once
    (TITLE + BIRTH + " " + FILLERS[0] + " " + FILLERS[1], " " + FILLERS[2][:6], 1),  # ... "She is" also starts "She is currently employed"
    (TITLE + BIRTH + " " + FILLERS[0] + " " + FILLERS[1], " She is known", 0),  # at most two fillers
    (TITLE + BIRTH + " " + CAREER + " " + EDUCATION, " Colleagues", 1),  # a filler may come last
    (TITLE + BIRTH + " " + CAREER + " " + EDUCATION, "", 1),  # the end of a whole document
    (TITLE + BIRTH + " " + CAREER, "", 0),  # no education sentence yet
    (TITLE + BIRTH + " " + CAREER + " " + EDUCATION + " ", "", 0),  # a trailing space is no document
    (TITLE + BIRTH + " " + CAREER + " " + EDUCATION + " " + FILLERS[0] + " " + FILLERS[1], " She", 0),  # nothing left
])
def test_hand_worked_cases(judge, starting_text, token, expected):
    assert verdict(judge, starting_text, token) == expected


def test_an_unknown_document_is_not_judged(judge):
    assert judge.judge([Query("nobody", TITLE, "Mary")]) == [None]


def test_every_gold_token_of_every_document_is_acceptable(small_world, world_tokenizer):
    judge = ExactJudge(small_world)
    queries, ends = [], []
    for doc in small_world.documents:
        _, starts, stops = world_tokenizer.encode_with_offsets(doc.text)
        # a token that adds no text (the dummy prefix alone before a byte-spelled first letter) reads as an end
        queries += [Query(doc.doc_id, doc.text[:s], doc.text[s:e]) for s, e in zip(starts.tolist(), stops.tolist()) if e > s]
        ends.append(Query(doc.doc_id, doc.text, ""))
        ends.append(Query(doc.doc_id, doc.text[: doc.text.index(".") + 1], ""))  # after the birth sentence: not an end
    assert judge.judge(queries) == [1] * len(queries)
    assert judge.judge(ends) == [1, 0] * len(small_world.documents)
