import pytest

from evaluation.backends.text import truncate_at_stop
from evaluation.factscore.atomic_facts import (
    ANSWER_STOP,
    INSTRUCTION,
    N_FIXED_DEMOS,
    AtomicFactGenerator,
    detect_initials,
    fix_sentence_splitter,
    load_demos,
    split_sentences,
    text_to_facts,
)
from evaluation.factscore.human import read_labeled
from evaluation.factscore.metric import remove_citation
from tests.evaluation.factscore.factscore_fixtures import ScriptedLLM, spacy_nlp


@pytest.fixture(scope="module")
def generator():
    return AtomicFactGenerator(ScriptedLLM(lambda p: ""), nlp=spacy_nlp())


@pytest.mark.parametrize(
    ("source", "min_equal", "clean"),
    [("ChatGPT", 157, None), ("InstructGPT", 181, None), ("PerplexityAI", 162, remove_citation)],
)
def test_sentences_match_factscore_annotations(source, min_equal, clean):
    """FActScore's annotators labelled the sentences of its own splitter: ours give the
    same sentence lists for all ChatGPT responses and all but one InstructGPT response
    (a quote ending in '.”'); for PerplexityAI after its citation removal, all but 4
    responses, whose annotations stop at the first invalid paragraph."""
    records = [r for r in read_labeled(source) if r["annotations"] is not None]
    text = clean or (lambda t: t)
    equal = sum(split_sentences(text(r["output"]))[0] == [a["text"] for a in r["annotations"]] for r in records)
    assert equal >= min_equal, f"{source}: {equal} of {len(records)}"


def test_fix_sentence_splitter_by_hand():
    assert detect_initials("He met J. K. Rowling and J.R. Smith.") == ["J. K.", "J.R."]
    assert fix_sentence_splitter(["He met J.", "K. Rowling in 1990."], ["J. K."]) == ["He met J. K. Rowling in 1990."]
    assert fix_sentence_splitter(["He was born in 1950.", "he died in 2000."], []) == [
        "He was born in 1950. he died in 2000."
    ]
    # a one-word first sentence is glued to the next one ...
    assert fix_sentence_splitter(["Hi.", "He was born.", "He died."], []) == ["Hi. He was born.", "He died."]
    # ... and, as in FActScore, a one-word sentence in between does not reset that
    assert fix_sentence_splitter(["Hi.", "Yes.", "He was born.", "He died."], []) == [
        "Hi. Yes. He was born.",
        "He died.",
    ]


def test_split_sentences_keeps_paragraph_breaks():
    sentences, breaks = split_sentences("Dr. Smith was born in the U.S. in Jan. 1990. He died.\n\nHe was a painter.")
    assert sentences == ["Dr. Smith was born in the U.S. in Jan. 1990.", "He died.", "He was a painter."]
    assert breaks == [2]


def test_text_to_facts_by_hand():
    assert text_to_facts("\n- He was born.\n- He is a painter") == ["He was born.", "He is a painter."]
    assert text_to_facts("- A - B.") == ["A", "B."]  # FActScore splits on every "- "
    assert text_to_facts("no list here") == []
    assert text_to_facts("- \n- ") == []  # empty items (FActScore would crash on them)


def test_prompt_has_fixed_demos_then_the_bm25_demo(generator):
    demos = load_demos()
    keys = list(demos)
    assert len(keys) == 21

    def block(k):
        return INSTRUCTION.format(k) + "".join(f"- {f}\n" for f in demos[k]) + "\n"

    sentence = keys[12]  # a demo sentence is its own best BM25 match
    expected = "".join(block(k) for k in keys[:N_FIXED_DEMOS] + [keys[12]]) + INSTRUCTION.format(sentence)
    assert generator.prompt(sentence) == expected.strip()
    assert generator.prompt("Ralph Earl was a painter.").endswith(
        "\n\nPlease breakdown the following sentence into independent facts: Ralph Earl was a painter."
    )


def test_postprocess_drops_vague_and_unsupported_dated_facts(generator):
    sentence = "Michael Collins was born on October 31, 1930."
    facts = [
        "Michael Collins was born.",  # vague, and contained in the next one
        "Michael Collins was born on October 31, 1930.",
        "Michael Collins was born in 1931.",  # a year the sentence does not have
        "Michael Collins was born on October 31, 1930.",  # duplicate
    ]
    assert generator.postprocess([(sentence, facts)], []) == [(sentence, [facts[1]])]


def test_postprocess_keeps_all_facts_when_filtering_loses_a_date(generator):
    sentence = "He was born in 1950 and died in 2000."
    facts = ["He was born in 1950.", "He was born in 1951."]
    # dropping the 1951 fact leaves 2000 uncovered: FActScore then keeps the facts as given
    assert generator.postprocess([(sentence, facts)], []) == [(sentence, facts)]


def test_postprocess_glues_one_word_sentences(generator):
    pairs = [("He was a painter.", ["He was a painter."]), ("Indeed.", ["Indeed."])]
    assert generator.postprocess(pairs, []) == [("He was a painter. Indeed.", ["He was a painter.", "Indeed."])]
    assert len(generator.postprocess(pairs, [1])) == 2  # not across a paragraph break


def test_run_prompts_each_sentence_once_and_flattens(generator):
    def answer(prompt: str) -> str:
        sentence = prompt.rsplit("independent facts: ", 1)[1]
        text = f"\n- {sentence}\n- {sentence[:-1]} indeed.\n\nPlease breakdown the following sentence into"
        return truncate_at_stop(text, ANSWER_STOP)  # what every backend does with `stop`

    llm = ScriptedLLM(answer)
    gen = AtomicFactGenerator(llm, nlp=spacy_nlp())
    out = gen.run(["Sure, here is a bio.\nRalph Earl was a painter. He was a painter.", "Ralph Earl was a painter."])
    assert len(llm.calls) == 1
    prompts, max_new_tokens, stop = llm.calls[0]
    assert stop == ANSWER_STOP and max_new_tokens == gen.max_new_tokens
    assert sorted(p.rsplit(": ", 1)[1] for p in prompts) == ["He was a painter.", "Ralph Earl was a painter."]
    assert out[0] == [
        ("Sure, here is a bio.", []),
        ("Ralph Earl was a painter.", ["Ralph Earl was a painter.", "Ralph Earl was a painter indeed."]),
        ("He was a painter.", ["He was a painter.", "He was a painter indeed."]),
    ]
    assert out[1] == [out[0][1]]
