"""The classes of A.2.1 a word (and each of its tokens) gets, as stored in the shards. Apart
from the spaCy labeler so that the trainer imports them without spaCy (a GPU worker need
not install it)."""

GRAMMATICAL, OTHER, FACT = 0, 1, 2
CLASS_NAMES = ("grammatical", "other", "fact")
UNLABELED = -1  # token_class of data without fact labels (the reference model's extra text)
