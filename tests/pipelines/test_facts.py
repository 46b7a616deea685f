"""Each A.2.1 rule on a sentence worked out by hand (en_core_web_sm 3.8.0 parses)."""

import numpy as np
import pytest

from pipelines.facts import split_long_text


def labels(labeler, text):
    return {(r["text"], r["start"]): (r["label"], r["rule"]) for r in labeler.label_text(text).records(text)}


def word(labeler, text, w, occurrence=0):
    """(label, rule) of the n-th occurrence of word w."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(w, start + 1)
    return labels(labeler, text)[(w, start)]


def test_grammatical_classes(labeler):
    text = "I saw each day pass in this town with my dog, and they might go."
    for w in ("each", "in", "this", "with", "my", ",", "and", "might", "."):
        assert word(labeler, text, w) == ("grammatical", "grammatical"), w
    assert word(labeler, text, "saw") == ("other", "other")


def test_named_entity_first_mention_only(labeler):
    text = "Apple Inc. sold phones. Apple Inc. sold more phones. Apple made profits."
    assert word(labeler, text, "Apple", 0) == ("fact", "entity_first_mention")
    assert word(labeler, text, "Inc.", 0) == ("fact", "entity_first_mention")
    assert word(labeler, text, "Apple", 1) == ("other", "entity_repeat")
    # types other than PERSON repeat only as the whole entity: "Apple" alone is new
    assert word(labeler, text, "Apple", 2) == ("fact", "entity_first_mention")


def test_person_components_repeat(labeler):
    text = "Wolfgang Amadeus Mozart was a composer. Wolfgang wrote operas. Leopold Mozart taught him."
    for w in ("Wolfgang", "Amadeus", "Mozart"):
        assert word(labeler, text, w) == ("fact", "person_component_first")
    assert word(labeler, text, "Wolfgang", 1) == ("other", "person_component_repeat")
    assert word(labeler, text, "Leopold") == ("fact", "person_component_first")
    assert word(labeler, text, "Mozart", 1) == ("other", "person_component_repeat")


def test_title_line_then_body_repeats(labeler):
    text = "Ralph Earl\n\nRalph Earl was a painter."
    assert word(labeler, text, "Ralph", 0)[0] == "fact"
    assert word(labeler, text, "Ralph", 1) == ("other", "person_component_repeat")


def test_numbers_first_occurrence_multidigit_as_one(labeler):
    text = "He was born in 1987 and moved in 1987 to 2,500 people."
    r = labeler.label_text(text)
    starts = r.start.tolist()
    i = starts.index(text.index("1987"))
    assert r.end[i] - r.start[i] == 4  # one word for the four digits
    assert word(labeler, text, "1987", 0)[0] == "fact"
    assert word(labeler, text, "1987", 1)[0] == "other"
    assert word(labeler, text, "2,500")[0] == "fact"


def test_number_rule_outside_entities(labeler):
    tracker_text = "The code was 4471 and then 4471 again."
    assert word(labeler, tracker_text, "4471", 0)[0] == "fact"
    assert word(labeler, tracker_text, "4471", 1)[0] == "other"


def test_factual_common_nouns(labeler):
    text = "She was a lawyer. She studied physics. Marie Curie, a physicist, won."
    assert word(labeler, text, "lawyer") == ("fact", "chunk_common_noun")  # predicative attribute
    assert word(labeler, text, "physics") == ("fact", "chunk_common_noun")  # direct object
    assert word(labeler, text, "physicist") == ("fact", "chunk_common_noun")  # appositive


def test_manner_preposition_is_not_a_fact(labeler):
    text = "He was a lawyer by training."
    assert word(labeler, text, "lawyer") == ("other", "manner_preposition")
    assert word(labeler, text, "training") == ("other", "other")


def test_person_cues(labeler):
    text = "Dr Jonah Keel arrived."
    assert word(labeler, text, "Dr") == ("other", "other")  # a title is the cue, not the fact
    assert word(labeler, text, "Keel")[0] == "fact"


def test_org_keyword_and_leading_the(labeler):
    text = "Smith was born in 1950. The committee of farmers elected Jones."
    assert word(labeler, text, "committee") == ("fact", "chunk_org")
    assert word(labeler, text, "The") == ("grammatical", "grammatical")  # the "the" itself stays grammatical
    text = "They toured the big Hall"
    assert word(labeler, text, "Hall") == ("fact", "chunk_org")


def test_org_cues_are_configurable(labeler):
    """The paper's three keywords only, and no leading-"the" cue: the same chunks fall to the
    next rule (proper noun) or to none."""
    from pipelines.facts import PAPER_ORG_KEYWORDS, FactLabeler, LabelerConfig

    narrow = FactLabeler(LabelerConfig(org_keywords=PAPER_ORG_KEYWORDS, org_leading_the=False), nlp=labeler.nlp)
    text = "Smith was born in 1950. The committee of farmers elected Jones."
    assert word(narrow, text, "committee") == ("fact", "chunk_org")  # a keyword the paper names
    text = "They toured the big Hall"
    assert word(narrow, text, "Hall") == ("fact", "chunk_proper_noun")  # no longer ORG by "the"
    text = "The club of farmers elected Jones."
    assert word(labeler, text, "club") == ("fact", "chunk_org")
    assert word(narrow, text, "club")[1] != "chunk_org"


def test_noun_chunks_split_at_newlines(labeler):
    text = "They toured the big Hall\nMain Street Bazaar"
    assert word(labeler, text, "Hall")[1] == "chunk_org"
    # without the split, "Main Street Bazaar" would be part of the "the ..." chunk
    assert word(labeler, text, "Main") == ("fact", "chunk_proper_noun")


def test_repeated_chunk_is_other(labeler):
    text = "She studied physics. Later she studied physics again."
    assert word(labeler, text, "physics", 0)[0] == "fact"
    assert word(labeler, text, "physics", 1) == ("other", "chunk_repeat")


def test_word_offsets_cover_text_without_whitespace(labeler):
    text = "Ralph Earl (May 11, 1751\u00a0– August 16, 1801)\nwas an  American painter."
    r = labeler.label_text(text)
    covered = np.zeros(len(text), dtype=bool)
    for s, e in zip(r.start, r.end):
        assert text[s:e].strip() == text[s:e] and e > s
        covered[s:e] = True
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))


def test_long_documents_are_split_and_keep_first_mentions(labeler):
    sentence = "Zorbulon Vexley founded Quarrington Mills in 1901.\n"
    text = sentence * 30
    pieces = split_long_text(text, max_chars=200)
    assert "".join(p for _, p in pieces) == text and all(len(p) <= 200 for _, p in pieces)
    from pipelines.facts import FactLabeler, LabelerConfig

    small = FactLabeler(LabelerConfig(max_chars=200), nlp=labeler.nlp)
    r = small.label_text(text)
    whole = labeler.label_text(text)
    assert r.start.tolist() == whole.start.tolist()
    first = r.start.tolist().index(text.index("Zorbulon"))
    later = r.start.tolist().index(text.index("Zorbulon", 10))
    assert r.cls[first] == 2 and r.cls[later] != 2  # the first-mention memory crosses pieces


@pytest.mark.parametrize("text", ["", "   \n\n  "])
def test_empty_and_whitespace_documents(labeler, text):
    assert len(labeler.label_text(text)) == 0
    results = list(labeler.label_texts(["Alan Turing was English.", text, "Paris is big."]))
    assert len(results) == 3 and len(results[1]) == 0 and len(results[2]) > 0
