"""Word labels to token labels (A.2.1, last paragraph): each SentencePiece token inherits
the class of the word it belongs to."""

from __future__ import annotations

import numpy as np

from pipelines.classes import GRAMMATICAL
from pipelines.facts import WordLabels


def token_classes(text_length: int, words: WordLabels, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Class of each token whose character span is [starts[k], ends[k]).

    A token covering several words (")," or "▁(May") takes the highest class among them
    (fact > other > grammatical): a token needed to state a fact is a fact token. A token
    of whitespace alone ("▁", a newline byte) is grammatical. Byte-fallback pieces of one
    character have empty spans except the last; they take that character's class.
    """
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int8)
    char_class = np.full(text_length + 1, -1, dtype=np.int8)  # -1: whitespace, outside words
    for s, e, c in zip(words.start.tolist(), words.end.tolist(), words.cls.tolist()):
        char_class[s:e] = c
    if np.any(starts[1:] < starts[:-1]):
        raise ValueError("token offsets are not in text order")
    cls = np.maximum.reduceat(char_class, starts.astype(np.intp))
    # reduceat reads up to the next token's start; a token's own span may end earlier
    # only at the end of text, which the sentinel element (-1) covers.
    return np.where(cls < 0, GRAMMATICAL, cls).astype(np.int8)
