import pytest

from evaluation.factscore.entities import (
    bio_generation,
    bio_prompt,
    build_embedded_knowledge,
    embedded_people,
    entity_prompts,
    factscore_entities,
    is_person_article,
)
from evaluation.factscore.knowledge import KnowledgeSource


@pytest.mark.parametrize(
    ("lead", "person"),
    [
        ("Ralph Earl (May 11, 1751 – August 16, 1801) was an American painter.", True),
        ("Will Gluck (born November 7, 1978) is an American film director.", True),
        ("Jonathan Hornblower (30 October 1717 – 7 December 1780) was an English pioneer.", True),
        ("Hatip Mehmed Efendi (died 1773) was an Ottoman paper marbling artist.", True),
        ("Fritz Peter (1899–1949) was a German mathematician.", True),
        ("Wind Quintet IV (1984–85) is George Perle's (1915–2009) fourth wind quintet.", False),
        ("Elkus / Manfredi Architects is an architectural firm founded in 1988 (born of a merger).", False),
        ("Mounds Mall is a shopping mall in Anderson, Indiana.", False),
        ("Sun Tailor is the stage name of Israeli-born singer Arnon Naor.", False),  # a person without dates
    ],
)
def test_is_person_article(lead, person):
    assert is_person_article(f"Title\n\n{lead}\nMore text.") is person


def test_prompts_follow_zhao_et_al():
    assert bio_prompt("Ralph Earl") == "Tell me a bio of Ralph Earl. Ralph Earl is"
    assert bio_generation("Ralph Earl", " an American painter.") == "Ralph Earl is an American painter."
    paper = entity_prompts("paper")
    assert len(paper) == 183 and len(set(paper)) == 183
    assert paper[0] == ("Kang Ji-hwan", "Tell me a bio of Kang Ji-hwan. Kang Ji-hwan is", "Kang Ji-hwan")
    assert factscore_entities()[21]["entity"] == "Sharad Kumar (athlete)"  # titles kept verbatim
    with pytest.raises(ValueError):
        entity_prompts("other")


@pytest.fixture(scope="module")
def everyone():
    return embedded_people("all")


def test_embedded_people_by_split(everyone):
    assert len(everyone) == 221 and len({p["title"] for p in everyone}) == 221
    validation = [p for p in everyone if p["split"] == "validation"]
    assert len(validation) == 25 and validation[0]["entity"] == "Ralph Earl"
    assert [p["title"] for p in embedded_people()] == [p["title"] for p in validation]  # the default
    assert all(p["prompt"] == bio_prompt(p["entity"]) and p["text"].startswith(p["title"]) for p in everyone)
    with pytest.raises(ValueError):
        embedded_people("test")


def test_embedded_knowledge_holds_every_person(tmp_path, everyone):
    stats = build_embedded_knowledge(tmp_path / "people.db")
    assert stats["documents"] == stats["people"] == 221
    with KnowledgeSource(tmp_path / "people.db") as ks:
        assert all(p["title"] in ks for p in everyone)
        first = ks.passages("Ralph Earl")[0]["text"]
        lead = "<s>Ralph Earl Ralph Earl (May 11, 1751\xa0– August 16, 1801) was an American painter"
        assert first.startswith(lead)
