import json
import lzma

import pytest
from transformers import AutoTokenizer

from pipelines.corpus import LEADS_FILE
from pipelines.tokenizer import CALL_TOKEN, FAST_FILE, Tokenizer, save_hf_tokenizer

# what the Metaspace pre-tokenizer of transformers' LlamaTokenizer got wrong (a leading
# space), and what else a converter can get wrong: repeated and trailing spaces, tabs, line
# breaks, text that is only whitespace, unicode (NFKC-able ligature, combining accent,
# no-break space), characters outside the vocabulary (byte fallback), literal special tokens
HARD_TEXTS = [
    " leading space", " Paris", "  two leading", "trailing  ", "Paris  was", "a\tb", "\t tab first", "x\r\ny",
    "\n\nline", "one\ntwo\n", "", " ", "   ", "naïve café", "ﬁne e\u0301", "a\u00a0b", "東京 🙂", "12345 1,000.5",
    f"a literal {CALL_TOKEN} and <s> </s> <unk> in text",
]


@pytest.fixture(scope="module")
def hf(tokenizer, tmp_path_factory):
    out = tmp_path_factory.mktemp("hf-tokenizer")
    save_hf_tokenizer(tokenizer.path, out)
    return AutoTokenizer.from_pretrained(out)


def test_call_is_the_last_id_and_never_produced_from_text(tokenizer):
    assert tokenizer.call_id == tokenizer.vocab_size - 1 == 2000
    ids = tokenizer.encode(f"a literal {CALL_TOKEN} in a document")
    assert tokenizer.call_id not in ids.tolist()


def test_digits_are_split(tokenizer):
    pieces = [tokenizer.piece(i) for i in tokenizer.encode("in 1769")]
    assert pieces[-4:] == ["1", "7", "6", "9"]


def test_missing_tokenizer_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        Tokenizer(tmp_path)


def test_sentencepiece_prefixes_one_space_whatever_the_text_starts_with(tokenizer):
    # worked by hand: the dummy prefix "▁" comes before the text's own space, and a word
    # starts at each "▁", so " Paris" is "▁" then the pieces of "▁Paris"
    assert [tokenizer.piece(i) for i in tokenizer.encode(" Paris")] == ["▁", *[tokenizer.piece(i) for i in tokenizer.encode("Paris")]]
    assert [tokenizer.piece(i) for i in tokenizer.encode("  two")][:2] == ["▁", "▁"]


@pytest.mark.parametrize("text", HARD_TEXTS)
def test_the_fast_tokenizer_encodes_and_decodes_as_sentencepiece(tokenizer, hf, text):
    ids = tokenizer.encode(text).tolist()
    assert hf(text, add_special_tokens=False)["input_ids"] == ids
    assert hf.decode(ids) == tokenizer.decode(ids) == text


def test_characters_outside_the_vocabulary_fall_back_to_bytes(tokenizer, hf):
    ids = tokenizer.encode("🙂").tolist()
    assert [tokenizer.piece(i) for i in ids][-4:] == ["<0xF0>", "<0x9F>", "<0x99>", "<0x82>"]
    assert hf.convert_ids_to_tokens(ids) == [tokenizer.piece(i) for i in ids]


def test_the_fast_tokenizer_matches_sentencepiece_on_the_shipped_corpus(tokenizer, hf):
    leads = [a["extract"] for a in json.load(lzma.open(LEADS_FILE, "rt")).values()][::40]  # about 200 articles
    texts = [t for lead in leads for t in (lead, " " + lead, lead.replace(". ", ".  ") + "\n")]
    mismatches = [t for t in texts if hf(t, add_special_tokens=False)["input_ids"] != tokenizer.encode(t).tolist()]
    assert len(texts) > 500 and mismatches == []
    assert [t for t in texts if hf.decode(tokenizer.encode(t).tolist()) != t] == []


def test_special_tokens(tokenizer, hf, tmp_path):
    save_hf_tokenizer(tokenizer.path, tmp_path)
    assert (tmp_path / FAST_FILE).exists() and hf.padding_side == "left"
    assert hf.convert_tokens_to_ids(CALL_TOKEN) == tokenizer.call_id == len(hf) - 1
    assert CALL_TOKEN in hf.all_special_tokens
    assert (hf.bos_token_id, hf.eos_token_id, hf.unk_token_id) == (tokenizer.bos_id, tokenizer.eos_id, 0)
    assert hf.decode([tokenizer.call_id]) == CALL_TOKEN
    ids = tokenizer.encode("Paris").tolist()
    assert hf.decode([tokenizer.call_id, *ids, tokenizer.eos_id], skip_special_tokens=True) == tokenizer.decode(ids) == "Paris"
