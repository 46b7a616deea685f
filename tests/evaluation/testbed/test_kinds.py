"""Token kinds and the regime ratio R on hand-made documents, counted by hand."""

import shutil

import numpy as np
import pyarrow as pa
import pytest

from evaluation.testbed.exact import KnowledgeBase
from evaluation.testbed.kinds import TOKEN_KINDS, character_kinds, measure_regime, token_kinds
from pipelines.biographies import CITIES, Document, Person, Span, World
from pipelines.classes import FACT, GRAMMATICAL
from pipelines.files import write_json
from pipelines.shards import MANIFEST, TOKEN_SCHEMA, ShardError, list_array, write_table
from pipelines.tokenizer import MODEL_FILE
from tests.evaluation.testbed.worlds import SMALL

ROWS = [  # the knowledge base: Mary is in the tail, John in the head
    {"person_id": 0, "name": "Mary Smith", "gender": "female", "birth_date": "March 3, 1970", "birth_city": "Lyon",
     "birth_country": "France", "university": "Marston College", "field": "law", "employer": "Ivers Labs",
     "employer_city": "Porto", "documents": 1, "train_documents": 1, "bucket": "tail"},
    {"person_id": 1, "name": "John Brown", "gender": "male", "birth_date": "May 9, 1961", "birth_city": "Athens",
     "birth_country": "Greece", "university": "University of Westmoor", "field": "history", "employer": "Ivers Labs",
     "employer_city": "Porto", "documents": 3, "train_documents": 3, "bucket": "head"},
]
PEOPLE = tuple(Person(**{k: v for k, v in r.items() if k not in ("train_documents", "bucket")}) for r in ROWS)
KB = KnowledgeBase(ROWS, {"employers": {"Ivers Labs": "Porto"}, "cities": CITIES, "source": SMALL.source()})
MARY_TEXT = "Mary Smith\n\nMary Smith was born in Lyon, France."
JOHN_TEXT = "John Brown\n\nHe studied history."


def document(doc_id: str, person_id: int, text: str, values: dict[str, str]) -> Document:
    title = text.split("\n", 1)[0]
    spans = tuple(Span(a, text.index(v), text.index(v) + len(v)) for a, v in values.items())
    return Document(doc_id, person_id, title, text, spans)


MARY_DOC = document("mary-0", 0, MARY_TEXT, {"birth_city": "Lyon", "birth_country": "France"})
JOHN_DOC = document("john-0", 1, JOHN_TEXT, {"field": "history"})


def kinds_of(doc: Document, bucket: str, tokens: list[str]) -> list[str]:
    ends = np.cumsum([len(t) for t in tokens])
    starts = ends - [len(t) for t in tokens]
    assert "".join(tokens) == doc.text
    return [TOKEN_KINDS[k] for k in token_kinds(character_kinds(doc, bucket), starts, ends)]


def test_token_kinds_by_hand():
    tokens = ["Mary", " Smith", "\n", "\n", "Mary", " Smith", " was", " born", " in", " Lyon", ",", " France", "."]
    assert kinds_of(MARY_DOC, "tail", tokens) == [
        "title_name", "title_name", "other", "other", "other", "other", "other", "other", "other",  # a later mention is other
        "tail_value", "other", "structural_value", "other"]
    # a token is a value token when it covers a letter of the value; a space or comma alone is not
    tokens = ["Mary Smith\n\n", "Mary Smith was born in", " Ly", "on,", " ", "F", "rance."]
    assert kinds_of(MARY_DOC, "unseen", tokens) == ["title_name", "other", "unseen_value", "unseen_value", "other",
                                                   "structural_value", "structural_value"]
    assert kinds_of(JOHN_DOC, "head", ["John Brown", "\n\n", "He studied", " his", "tory."]) == [
        "title_name", "other", "other", "head_value", "head_value"]


def token_dataset(path, tok, rows: list[tuple[Document, str, list[int]]]) -> None:
    """A token dataset of `rows` (document, split, token_class) with the tokenizer's ids."""
    path.mkdir()
    ids = [tok.encode(doc.text) for doc, _, _ in rows]
    table = pa.table([pa.array([d.doc_id for d, _, _ in rows]), pa.array([s for _, s, _ in rows]),
                      list_array(ids, pa.int32()), list_array([np.asarray(c, np.int8) for _, _, c in rows], pa.int8())],
                     schema=TOKEN_SCHEMA)
    sha = write_table(path / "shard-0000.parquet", table)
    write_json(path / MANIFEST, {"shards": [{"file": "shard-0000.parquet", "sha256": sha}]})
    shutil.copyfile(tok.path, path / MODEL_FILE)


def test_regime_counted_by_hand(world_tokenizer, tmp_path):
    pieces = lambda text: [text[s:e] for s, e in zip(*world_tokenizer.encode_with_offsets(text)[1:])]  # noqa: E731
    # the tokenization the hand count below relies on
    assert pieces(MARY_TEXT) == ["M", "ar", "y", " S", "m", "it", "h", "\n", "\n", "M", "ar", "y", " S", "m", "it", "h",
                                 " was", " born", " in", " L", "y", "on", ",", " ", "F", "r", "an", "c", "e", "."]
    assert pieces(JOHN_TEXT) == ["J", "o", "h", "n", " B", "ro", "w", "n", "\n", "\n", "H", "e", " st", "u", "d", "i", "ed",
                                 " ", "h", "is", "t", "or", "y", "."]
    # Mary (tail): 7 title, 15 other, 3 tail-value, 5 structural tokens, all labelled fact.
    # John (head): 8 title, 11 other, 5 head-value tokens; the title and the value labelled fact.
    john_class = [FACT] * 8 + [GRAMMATICAL] * 10 + [FACT] * 5 + [GRAMMATICAL]
    later = document("mary-1", 0, MARY_TEXT, {"birth_city": "Lyon", "birth_country": "France"})  # validation: not counted
    token_dataset(tmp_path / "tokens", world_tokenizer, [(MARY_DOC, "train", [FACT] * 30), (JOHN_DOC, "train", john_class),
                                                         (later, "validation", [FACT] * 30)])
    world = World(SMALL, PEOPLE, {"Ivers Labs": "Porto"}, (MARY_DOC, JOHN_DOC, later))
    r = measure_regime(tmp_path / "tokens", KB, world)
    assert r["tokens"] == 54
    assert r["share"] == pytest.approx({"other": 26 / 54, "title_name": 15 / 54, "structural_value": 5 / 54,
                                        "head_value": 5 / 54, "tail_value": 3 / 54, "unseen_value": 0.0})
    assert r["fact_labelled"] == pytest.approx({"other": 15 / 26, "title_name": 1.0, "structural_value": 1.0,
                                                "head_value": 1.0, "tail_value": 1.0, "unseen_value": None})
    assert r["fact_fraction"] == pytest.approx(43 / 54)
    assert r["R"] == pytest.approx((3 + 15) / (0.15 * 54))  # tail values and title names
    assert r["R_values"] == pytest.approx(3 / (0.15 * 54))
    assert measure_regime(tmp_path / "tokens", KB, world, split="validation")["tokens"] == 30


def test_a_document_not_of_the_world_is_named(world_tokenizer, tmp_path):
    stranger = document("stranger-0", 0, MARY_TEXT, {})
    token_dataset(tmp_path / "tokens", world_tokenizer, [(stranger, "train", [FACT] * 30)])
    with pytest.raises(ShardError, match="shard-0000.parquet: doc_id stranger-0 is not a document"):
        measure_regime(tmp_path / "tokens", KB, World(SMALL, PEOPLE, {}, (MARY_DOC,)))
