"""A.2.1, last paragraph: tokens inherit the class of their word."""

import numpy as np

from pipelines.align import token_classes
from pipelines.classes import FACT, GRAMMATICAL, OTHER
from pipelines.facts import WordLabels


def words(spans):
    s, e, c = zip(*spans)
    return WordLabels(np.array(s, np.int32), np.array(e, np.int32), np.array(c, np.int8), np.zeros(len(s), np.int8))


def test_subword_tokens_inherit_their_word_class():
    text = "Earl (1751)"
    # words: Earl[0,4) fact, "("[5,6) grammatical, 1751[6,10) fact, ")"[10,11) grammatical
    w = words([(0, 4, FACT), (5, 6, GRAMMATICAL), (6, 10, FACT), (10, 11, GRAMMATICAL)])
    # tokens: "▁E"(0,1) "arl"(1,4) "▁("(4,6) "1"(6,7) "7"(7,8) "5"(8,9) "1"(9,10) ")"(10,11)
    starts = np.array([0, 1, 4, 6, 7, 8, 9, 10])
    ends = np.array([1, 4, 6, 7, 8, 9, 10, 11])
    assert token_classes(len(text), w, starts, ends).tolist() == [FACT, FACT, GRAMMATICAL, FACT, FACT, FACT, FACT, GRAMMATICAL]


def test_token_over_two_words_takes_the_highest_class_and_whitespace_is_grammatical():
    text = "a  b,c"
    w = words([(0, 1, OTHER), (3, 4, OTHER), (4, 5, GRAMMATICAL), (5, 6, FACT)])
    # tokens: "▁a"(0,1) "▁"(1,2) "▁b"(2,4) ",c"(4,6)
    starts, ends = np.array([0, 1, 2, 4]), np.array([1, 2, 4, 6])
    assert token_classes(len(text), w, starts, ends).tolist() == [OTHER, GRAMMATICAL, OTHER, FACT]


def test_byte_fallback_pieces_share_their_character(tokenizer):
    text = "in 東京 today"
    ids, starts, ends = tokenizer.encode_with_offsets(text)
    w = words([(0, 2, GRAMMATICAL), (3, 5, FACT), (6, 11, OTHER)])
    cls = token_classes(len(text), w, starts, ends)
    pieces = [tokenizer.piece(i) for i in ids]
    byte_pieces = [c for p, c in zip(pieces, cls) if p.startswith("<0x")]
    assert len(byte_pieces) == 6 and all(c == FACT for c in byte_pieces)  # 2 characters x 3 UTF-8 bytes
    assert cls[0] == GRAMMATICAL and cls[-1] == OTHER


def test_real_tokenizer_round_trips_and_aligns(labeler, tokenizer):
    text = "Ralph Earl (May 11, 1751\u00a0– August 16, 1801)\nwas an  American painter."
    ids, starts, ends = tokenizer.encode_with_offsets(text)
    assert tokenizer.sp.decode(ids.tolist()) == text
    cls = token_classes(len(text), labeler.label_text(text), starts, ends)
    assert len(cls) == len(ids)
    digits = [c for i, c in zip(ids, cls) if tokenizer.piece(i) in "0123456789"]
    assert len(digits) == 4 + 4 + 2 + 2 and all(c == FACT for c in digits)  # split digits inherit
