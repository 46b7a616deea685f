"""The synthetic-biography world: determinism, the knowledge base matches the text, the
judge labels are exactly the value spans, spaCy labels the values as facts."""

from collections import Counter

import numpy as np
import pytest

from pipelines.biographies import (
    ATTRIBUTES,
    CITIES,
    PERSON_ATTRIBUTES,
    Document,
    Person,
    SyntheticConfig,
    annotated_text,
    fill,
    generate_world,
    read_knowledge_base,
    write_beside_corpus,
)
from pipelines.classes import FACT, GRAMMATICAL
from pipelines.corpus import CorpusConfig, build_corpus
from pipelines.doc_ids import doc_id_for, split_of
from pipelines.judge import delegated_chars, judge_calls, read_annotations

SMALL = "embedded:synthetic-bios?people=60&head_people=6&head_documents=5&seed=3"


@pytest.fixture(scope="module")
def world():
    return generate_world(SyntheticConfig.from_source(SMALL))


def test_source_parameters_and_errors():
    config = SyntheticConfig.from_source(SMALL)
    assert (config.people, config.head_people, config.head_documents, config.seed) == (60, 6, 5, 3)
    assert SyntheticConfig.from_source(config.source()) == config
    assert SyntheticConfig.from_source("embedded:synthetic-bios") == SyntheticConfig()
    with pytest.raises(ValueError, match="unknown parameter 'persons'"):
        SyntheticConfig.from_source("embedded:synthetic-bios?persons=3")
    with pytest.raises(ValueError, match="head_people"):
        SyntheticConfig(people=3, head_people=4)


def test_deterministic_from_the_seed(world):
    again = generate_world(SyntheticConfig.from_source(SMALL))
    assert again == world
    other = generate_world(SyntheticConfig.from_source(SMALL.replace("seed=3", "seed=4")))
    assert [d.text for d in other.documents] != [d.text for d in world.documents]


def test_popularity_head_and_tail(world):
    docs = Counter(d.person_id for d in world.documents)
    assert all(docs[p.person_id] == 5 == p.documents for p in world.people[:6])
    assert {docs[p.person_id] for p in world.people[6:]} == {1, 2}
    assert len({p.name for p in world.people}) == 60  # names identify people


def test_knowledge_base_matches_the_text(world):
    people = {p.person_id: p for p in world.people}
    for doc in world.documents:
        person = people[doc.person_id]
        assert doc.text.startswith(f"{person.name}\n\n")
        assert sorted(s.attribute for s in doc.spans) == sorted(ATTRIBUTES)  # every value once
        for span in doc.spans:
            assert doc.text[span.start:span.end] == person.value(span.attribute)
    for person in world.people:  # structural facts: the city's country, the employer's city
        assert person.birth_country == CITIES[person.birth_city]
        assert person.employer_city == world.employers[person.employer]


def test_fill_by_hand():
    person = Person(0, "Mary Smith", "female", "March 3, 1970", "Lyon", "France", "Marston College", "law",
                    "Ivers Labs", "Porto", 1)
    text, spans = fill("{name} was born in {birth_city}, {birth_country}; {his} employer is {employer}.", person, 10)
    assert text == "Mary Smith was born in Lyon, France; her employer is Ivers Labs."
    assert [(s.attribute, s.start, s.end) for s in spans] == [
        ("birth_city", 33, 37), ("birth_country", 39, 45), ("employer", 63, 73)]


def test_read_source_and_knowledge_base_beside_the_corpus(tmp_path, world):
    table, report = build_corpus(CorpusConfig(sources=(SMALL,)))
    assert table.num_rows == len(world.documents) and not report.skipped
    assert set(table.column("doc_id").to_pylist()) == {d.doc_id for d in world.documents}
    write_beside_corpus([SMALL], tmp_path)
    people, structure = read_knowledge_base(tmp_path / "knowledge_base")
    assert [p["name"] for p in people] == [p.name for p in world.people]
    assert structure["employers"] == world.employers
    for row in people:
        train = sum(split_of(d.doc_id) == "train" for d in world.documents if d.person_id == row["person_id"])
        assert row["train_documents"] == train
        assert row["bucket"] == ("head" if train >= 3 else "tail" if train else "unseen")
    with pytest.raises(ValueError, match="at most one"):
        write_beside_corpus([SMALL, "embedded:synthetic-bios"], tmp_path)


def test_annotated_text_by_hand():
    person = Person(0, "Mary Smith", "female", "March 3, 1970", "Lyon", "France", "Marston College", "law",
                    "Ivers Labs", "Porto", 1)
    text, spans = fill("{name} was born on {birth_date}.", person)
    doc = Document("d", 0, "Mary Smith", text, tuple(spans))
    assert annotated_text(doc, "Mary Smith") == (
        "Mary Smith was born on [dblookup('Mary Smith', 'Birth Date') -> March 3, 1970] March 3, 1970.")


def test_judge_labels_cover_exactly_the_value_spans(world, tokenizer):
    annotations = read_annotations(SMALL)
    assert len(annotations) == len(world.documents)
    for doc in world.documents[:40]:
        annotated, annotator = annotations[doc_id_for(doc.text)]
        assert annotator == "knowledge_base"
        mask, report = delegated_chars(annotated, doc.text, doc.doc_id)
        assert (report.lookups, report.placed, report.unplaced) == (len(ATTRIBUTES), len(ATTRIBUTES), [])
        expected = np.zeros(len(doc.text), dtype=bool)
        for span in doc.spans:
            expected[span.start:span.end] = [c.isalnum() for c in doc.text[span.start:span.end]]
        assert np.array_equal(mask, expected)
        ids, starts, ends = tokenizer.encode_with_offsets(doc.text)
        calls = judge_calls(mask, starts, ends)
        for call, s, e in zip(calls, starts, ends):  # a token is a call iff it covers a value's letter or digit
            assert call == any(expected[max(s, 0):max(e, s + 1)])


def test_spacy_labels_first_mentions_of_values_as_facts(world, labeler):
    """As in a real article: the first mention of each person value is a fact (its
    non-grammatical words); a value repeated in the document (a city named twice) is not."""
    docs = world.documents[:40]
    missed, total = [], 0
    for doc, labels in zip(docs, labeler.label_texts([d.text for d in docs])):
        cls = np.full(len(doc.text), -1)
        for s, e, c in zip(labels.start, labels.end, labels.cls):
            cls[s:e] = c
        for span in doc.spans:
            value = doc.text[span.start:span.end]
            if span.attribute not in PERSON_ATTRIBUTES or value in doc.text[:span.start]:
                continue
            total += 1
            word_classes = cls[span.start:span.end][[c.isalnum() for c in value]]
            if not all(c in (FACT, GRAMMATICAL) for c in word_classes):
                missed.append((doc.doc_id, span.attribute, value))
    assert total >= 150 and len(missed) <= 0.03 * total, missed
