"""FActScore's atomic-fact generator (`factscore/atomic_facts.py`, biography setting),
reimplemented for any `TextLLM`.

A generation is split into paragraphs (lines) and sentences (NLTK Punkt with its English
parameters, plus FActScore's repair of splits at initials and of one-word sentences).
Each sentence gets a few-shot prompt: the first 7 demos of `demons.json` plus the one demo
closest to the sentence by BM25, then "Please breakdown the following sentence into
independent facts: <sentence>". The answer's "- " items are the atomic facts, which are
then cleaned with spaCy entities as FActScore does (`postprocess_atomic_facts`).

Differences from FActScore, all for determinism or for local models:
- NLTK's `punkt` data cannot be downloaded here; we ship its English parameters
  (`data/embedded/factscore/punkt_english.json.xz`, see data/README.md) and build the
  same `PunktSentenceTokenizer` from them.
- Where FActScore iterates over a Python set (entity matching), we iterate in sorted
  order, so the result does not depend on the process's hash seed.
- Completions are cut at the first blank line ("\\n\\n"): a base model continues the
  few-shot pattern with a new "Please breakdown..." block, which InstructGPT never did.
- Sentences FActScore discards anyway ("Sure...", "Please...") are not sent to the LLM.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
from rank_bm25 import BM25Okapi

from evaluation.backends.text import TextLLM
from evaluation.factscore.knowledge import FACTSCORE_DATA_DIR
from pipelines.files import read_json_file

DEMOS_FILE = FACTSCORE_DATA_DIR / "demons.json.xz"
PUNKT_FILE = FACTSCORE_DATA_DIR / "punkt_english.json.xz"
N_FIXED_DEMOS = 7  # atomic_facts.py: n = 7 if is_bio
N_BM25_DEMOS = 1  # atomic_facts.py: k = 1 if is_bio
INSTRUCTION = "Please breakdown the following sentence into independent facts: {}\n"
ANSWER_STOP = ("\n\n",)
DEFAULT_MAX_NEW_TOKENS = 256
NUMERIC_ENTITY_LABELS = frozenset({"DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL"})
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december")  # fmt: skip
# A fact ending in one of these is dropped when a longer fact contains it ("He was born."
# next to "He was born in 1950."); atomic_facts.py postprocess_atomic_facts.
VAGUE_ENDINGS = ("born.", " appointed.", " characterized.", " described.", " known.", " member.", " advocate.",
                 "served.", "elected.")  # fmt: skip
PERMITTED_ENDINGS = ("founding member.",)
_PUNCTUATION = frozenset(string.punctuation)


def load_demos(path: str | Path = DEMOS_FILE) -> dict[str, list[str]]:
    """FActScore's demos (`demos/demons.json`): sentence -> atomic facts, in file order."""
    demos = read_json_file(path)
    if not isinstance(demos, dict) or not all(isinstance(v, list) for v in demos.values()):
        raise ValueError(f"{path}: expected a JSON object mapping sentences to lists of facts")
    return demos


@lru_cache(maxsize=1)
def punkt_tokenizer() -> PunktSentenceTokenizer:
    """NLTK's English Punkt sentence tokenizer (what `nltk.sent_tokenize` uses)."""
    data = read_json_file(PUNKT_FILE)
    params = PunktParameters()
    params.abbrev_types = set(data["abbrev_types"])
    params.collocations = {tuple(pair) for pair in data["collocations"]}
    params.sent_starters = set(data["sent_starters"])
    params.ortho_context.update(data["ortho_context"])
    return PunktSentenceTokenizer(params)


def detect_initials(text: str) -> list[str]:
    return re.findall(r"[A-Z]\. ?[A-Z]\.", text)


def fix_sentence_splitter(sentences: list[str], initials: list[str]) -> list[str]:
    """FActScore's repair of Punkt's output: re-join a split between two initials ("J. K.")
    and glue one-word sentences and sentences starting in lower case to their neighbour.
    Kept as FActScore runs it, including its flag that, once set by a one-word first
    sentence, also glues the next multi-word sentence."""
    for initial in initials:
        if not any(initial in s for s in sentences):
            first, second = [t.strip() for t in initial.split(".") if t.strip()]
            for i in range(len(sentences) - 1):
                if sentences[i].endswith(first + ".") and sentences[i + 1].startswith(second + "."):
                    sentences = sentences[:i] + [sentences[i] + " " + sentences[i + 1]] + sentences[i + 2 :]
                    break
    out: list[str] = []
    glue_next = False
    for i, sent in enumerate(sentences):
        one_word = len(sent.split()) <= 1
        if one_word and i == 0:
            glue_next = True
            out.append(sent)
        elif one_word:  # FActScore leaves the flag as it is here (a typo in its code)
            out[-1] += " " + sent
        elif (sent[0].isalpha() and not sent[0].isupper() and i > 0) or glue_next:
            out[-1] += " " + sent
            glue_next = False
        else:
            out.append(sent)
    return out


def split_sentences(generation: str) -> tuple[list[str], list[int]]:
    """Sentences of a generation and the indices where a new paragraph (line) starts."""
    paragraphs = [p.strip() for p in generation.split("\n") if p.strip()]
    sentences: list[str] = []
    para_breaks: list[int] = []
    for i, paragraph in enumerate(paragraphs):
        if i > 0:
            para_breaks.append(len(sentences))
        sentences += fix_sentence_splitter(punkt_tokenizer().tokenize(paragraph), detect_initials(paragraph))
    return sentences, para_breaks


def text_to_facts(answer: str) -> list[str]:
    """The "- " items of an answer (atomic_facts.py `text_to_sentences`); the last one gets
    a final period. Empty items, on which FActScore would crash, are dropped."""
    facts = [item.strip() for item in answer.split("- ")[1:]]
    facts = [f for f in facts if f]
    if facts and not facts[-1].endswith("."):
        facts[-1] += "."
    return facts


def is_skipped_sentence(sentence: str, index: int) -> bool:
    """Sentences whose facts FActScore sets to [] in the biography setting."""
    return (
        sentence.startswith("This sentence does not contain any facts")
        or sentence.startswith(("Sure", "Please"))
        or (index == 0 and sentence.startswith("Here are"))
    )


def _normalize_answer(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _is_date(text: str) -> bool:
    return all(_is_int(tok) or tok in MONTHS for tok in _normalize_answer(text).split(" "))


class AtomicFactGenerator:
    """Breaks generations into atomic facts with an LLM (FActScore's `AtomicFactGenerator`,
    `is_bio=True`)."""

    def __init__(
        self,
        llm: TextLLM,
        demos: dict[str, list[str]] | None = None,
        nlp=None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ):
        from pipelines.facts import load_spacy

        self.llm = llm
        self.demos = demos if demos is not None else load_demos()
        self.demo_keys = list(self.demos)
        if len(self.demo_keys) < N_FIXED_DEMOS:
            raise ValueError(f"need at least {N_FIXED_DEMOS} demos, got {len(self.demo_keys)}")
        self.bm25 = BM25Okapi([k.split(" ") for k in self.demo_keys])
        self.nlp = nlp if nlp is not None else load_spacy()
        self.max_new_tokens = max_new_tokens
        self._entities: dict[str, frozenset[str]] = {}
        self.fixed_prefix = "".join(self._demo_block(k) for k in self.demo_keys[:N_FIXED_DEMOS])

    def _demo_block(self, key: str) -> str:
        return INSTRUCTION.format(key) + "".join(f"- {fact}\n" for fact in self.demos[key]) + "\n"

    def best_demos(self, sentence: str, k: int = N_BM25_DEMOS) -> list[str]:
        return self.bm25.get_top_n(sentence.split(" "), self.demo_keys, k)

    def prompt(self, sentence: str) -> str:
        """The exact prompt text sent for one sentence (FActScore strips it before sending)."""
        matched = "".join(self._demo_block(k) for k in self.best_demos(sentence))
        return (self.fixed_prefix + matched + INSTRUCTION.format(sentence)).strip()

    def run(
        self, generations: Sequence[str], log: Callable[[str], None] | None = None
    ) -> list[list[tuple[str, list[str]]]]:
        """(sentence, atomic facts) pairs per generation; all sentences of all generations
        go to the LLM in one call, each distinct sentence once."""
        split = [split_sentences(g) for g in generations]
        wanted = sorted({s for sentences, _ in split for i, s in enumerate(sentences) if not is_skipped_sentence(s, i)})
        if log:
            log(f"atomic facts: {len(wanted)} distinct sentences from {len(generations)} generations")
        answers = self.llm.generate([self.prompt(s) for s in wanted], self.max_new_tokens, ANSWER_STOP)
        facts_of = {s: text_to_facts(a) for s, a in zip(wanted, answers)}
        results = []
        for sentences, para_breaks in split:
            pairs = [(s, [] if is_skipped_sentence(s, i) else list(facts_of[s])) for i, s in enumerate(sentences)]
            results.append(self.postprocess(pairs, para_breaks))
        return results

    def detect_entities(self, text: str) -> frozenset[str]:
        """Dates and numbers of `text` (atomic_facts.py `detect_entities`)."""
        if text not in self._entities:
            entities: set[str] = set()

            def add(value: str) -> None:
                if "-" in value:
                    entities.update(part.strip() for part in value.split("-"))
                else:
                    entities.add(value)

            for ent in self.nlp(text).ents:
                if ent.label_ in NUMERIC_ENTITY_LABELS:
                    if _is_date(ent.text):
                        add(ent.text)
                    else:
                        for token in ent.text.split():
                            if _is_date(token):
                                add(token)
            for number in sorted(set(re.findall(r"\b\d+\b", text))):
                if not any(number in e for e in entities):
                    entities.add(number)
            self._entities[text] = frozenset(entities)
        return self._entities[text]

    def postprocess(
        self, pairs: list[tuple[str, list[str]]], para_breaks: list[int]
    ) -> list[tuple[str, list[str]]]:
        """atomic_facts.py `postprocess_atomic_facts`: glue one-word sentences to the one
        before; drop a vague fact that a longer one contains; drop a fact with a date or
        number that its sentence does not have, unless it abbreviates one the sentence has
        (then expand it); drop duplicates. If the kept facts do not cover every date and
        number of the sentence, keep the facts unfiltered."""
        merged: list[tuple[str, list[str]]] = []
        for i, (sent, facts) in enumerate(pairs):
            sent = sent.strip()
            if len(sent.split()) == 1 and i not in para_breaks and i > 0:
                merged[-1] = (merged[-1][0] + " " + sent, merged[-1][1] + facts)
            else:
                merged.append((sent, list(facts)))
        out = []
        for sent, facts in merged:
            entities = self.detect_entities(sent)
            covered: set[str] = set()
            kept: list[str] = []
            for i, fact in enumerate(facts):
                vague = fact.endswith(VAGUE_ENDINGS) and not fact.endswith(PERMITTED_ENDINGS)
                if vague and any(fact[:-1] in other for j, other in enumerate(facts) if j != i):
                    continue
                fact_entities = self.detect_entities(fact)
                covered |= fact_entities & entities
                unknown = fact_entities - entities
                dropped = False
                for new in sorted(unknown):
                    expansion = next((e for e in sorted(entities) if e.startswith(new)), None)
                    if expansion is None:
                        dropped = True
                        break
                    fact = fact.replace(new, expansion)
                    covered.add(expansion)
                if dropped or fact in kept:
                    continue
                kept.append(fact)
            out.append((sent, kept if covered == entities else facts))
        return out
