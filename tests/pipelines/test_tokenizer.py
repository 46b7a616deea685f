import pytest
from transformers import AutoTokenizer

from pipelines.tokenizer import CALL_TOKEN, Tokenizer, save_hf_tokenizer


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


def test_hugging_face_tokenizer_matches_sentencepiece(tokenizer, tmp_path, dwiki_texts):
    save_hf_tokenizer(tokenizer.path, tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert hf.convert_tokens_to_ids(CALL_TOKEN) == tokenizer.call_id
    assert CALL_TOKEN in hf.all_special_tokens
    lines = [line for text in dwiki_texts[:40] for line in text.split("\n") if line]
    mismatches = sum(hf.encode(line, add_special_tokens=False) != tokenizer.encode(line).tolist() for line in lines)
    assert mismatches == 0
    assert hf.decode([tokenizer.call_id]) == CALL_TOKEN
