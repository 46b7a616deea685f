"""The oracle partner of the synthetic world: it knows every value of the world and answers
every call made where a value of the prompted person (or a structural value) is due,
however the sentence so far is worded; elsewhere it declines (no candidates, so the
cascade counts the call as declined and uses the small model's own token).

How it decides, for the text so far (the partner's whole input):
1. The person: the last full name of a knowledge-base person in the text (the prompted
   person); none: decline.
2. The sentence so far: the text after the last ".", "!" or "?" followed by whitespace, or
   after the last line break.
3. At a cue (the sentence so far, trailing spaces aside, ends with the words that open a
   slot in the world's templates or their natural variants): the first row of this table
   that matches gives the slot (`CITY_BEFORE_COMMA`, then `CUES`).

   | the sentence so far ends with                               | topic     | slot        |
   |-------------------------------------------------------------|-----------|-------------|
   | "<city>,"  (a city of the world and a comma)                | any       | country     |
   | "(born", "born on", "birthday/birth date/date of birth is/was" | any    | birth_date  |
   | "on"                                                        | birth     | birth_date  |
   | "native of", "born in", "birthplace/hometown is/was"        | any       | birth_city  |
   | "in"                                                        | birth     | birth_city  |
   | "based in", "headquartered in", "located in"                | any       | headquarters|
   | "in"                                                        | career    | headquarters|
   | "work(s)/worked/working for/at", "employed by/at",          | any       | employer    |
   | "employer," "employer is/was", "joined"                     |           |             |
   | "at", "for", "by"                                           | career    | employer    |
   | "degree/major/majored/specialized/specializing/doctorate/PhD in", | any | field      |
   | "studied", "studying", "studies", "study", "chose"          |           |             |
   | "subject/field/major ... is/was"                            | any       | field       |
   | "graduated from", "graduate/alumna/alumnus of", "attended"  | any       | university  |
   | "At" as the sentence's only word                            | any       | university  |
   | "at", "from"                                                | education | university  |

   Words match whole and case-sensitively, the sentence's first letter read in lowercase
   ("Born on", "Her employer,"; "Harrowgate In" is no "in", "born in At" no "At"). The
   topic of the sentence so far is that of its last topic word or value: birth ("born", "native", "birthplace", "birth",
   "birthday", "hometown", a date), education ("studied", "studying", "studies", "study",
   "student", "graduated", "graduate", "subject", "major", "majored", "degree", "attended",
   "educated", "alumna", "alumnus", a university or field name), career ("work", "works",
   "worked", "working", "employed", "employer", "employee", "position", "joined", "job",
   "company", "career", "based", "headquartered", an employer name); none without one.
   The slot's value: the person's value for a person slot; for country, the country of
   that city; for headquarters, the headquarters of the last employer named in the
   sentence so far, the person's employer city when none is named, nothing (decline) when
   the named employer is not one of the world's.
4. Else, inside a value: the text ends with a proper prefix p (1 <= len(p) < len(v)) of a
   candidate value v that starts the text or follows a character that is neither a letter
   nor a digit. Candidates: the person's five values, the person's birth country and
   employer city, the country of every city and the headquarters of every world employer
   named in the sentence so far. A lowercase value (a field of study) counts only when it
   is due at the text before p (step 3 gives its slot there), so "his" does not start
   "history" nor "as" "astronomy"; a name or date counts anywhere, except that a p which
   begins the sentence and is also a prefix of a first word of the world's sentences about
   the person (every template filled for the person: the first name, a pronoun, "Born",
   "At", "After", "Colleagues") is read as that word ("M" of "Mary", not of "Madrid").
   Among several, the value due at the text before p wins, then the longest p.
5. Else decline.

The answer is our tokenizer's next token of the value in context: the value with the
space before it (step 3: " " + value, the space already written when the text so far ends
in one; step 4: p with the space before it, when there is one, then the rest) is tokenized
whole (SentencePiece without its dummy prefix, as `PartnerTokenMap`), and the token that
starts where the text so far ends is the answer, as text (a byte-spelled letter as the
letter); where no token starts there (the text so far cut a token of ours), the first token
of the rest. On a gold document every value's next token is the document's own.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from evaluation.backends.partners import PartnerQuery, PartnerReply
from evaluation.cascade.generate import PartnerTokenMap
from evaluation.testbed.exact import MENTIONS, SENTENCE_END, KnowledgeBase, words_pattern
from pipelines.biographies import CITIES, PERSON_ATTRIBUTES, TEMPLATES, Person, fill
from pipelines.tokenizer import Tokenizer

TOPIC_WORDS = {
    "birth": ("born", "native", "birthplace", "birth", "birthday", "hometown"),
    "education": ("studied", "studying", "studies", "study", "student", "graduated", "graduate", "subject", "major",
                  "majored", "degree", "attended", "educated", "alumna", "alumnus"),
    "career": ("work", "works", "worked", "working", "employed", "employer", "employee", "position", "joined", "job",
               "company", "career", "based", "headquartered"),
}
MENTION_TOPICS = {"birth_date": "birth", "university": "education", "field": "education", "employer": "career"}
TOPIC = re.compile(r"\b(?i:" + "|".join(rf"(?P<{t}>{words_pattern(words)})" for t, words in TOPIC_WORDS.items()) + r")\b")


@dataclass(frozen=True)
class Cue:
    pattern: re.Pattern  # matched at the end of the sentence so far (trailing spaces stripped)
    topic: str | None  # the topic the sentence must have, or None for any
    slot: str


def _cue(pattern: str, topic: str | None, slot: str) -> Cue:
    return Cue(re.compile(rf"(?:{pattern})\Z"), topic, slot)


CUES = (
    _cue(r"\(born|\bborn on|\b(?:birthday|birth date|date of birth) (?:is|was)", None, "birth_date"),
    _cue(r"\bon", "birth", "birth_date"),
    _cue(r"\b(?:native of|born in|(?:birthplace|hometown) (?:is|was))", None, "birth_city"),
    _cue(r"\bin", "birth", "birth_city"),
    _cue(r"\b(?:based|headquartered|located) in", None, "headquarters"),
    _cue(r"\bin", "career", "headquarters"),
    _cue(r"\b(?:works?|worked|working) (?:for|at)|\bemployed (?:by|at)|\bemployer(?:,| is| was)|\bjoined", None, "employer"),
    _cue(r"\b(?:at|for|by)", "career", "employer"),
    _cue(r"\b(?:degree|major|majored|specialized|specializing|doctorate|PhD) in|\b(?:studied|studying|studies|study|chose)",
         None, "field"),
    _cue(r"\b(?:subject|field|major)\b.*\b(?:is|was)", None, "field"),
    _cue(r"\b(?:graduated from|graduate of|alumna of|alumnus of|attended)", None, "university"),
    _cue(r"^at", None, "university"),
    _cue(r"\b(?:at|from)", "education", "university"),
)
CITY_BEFORE_COMMA = re.compile(rf"\b({words_pattern(CITIES)}),\Z")


@dataclass(frozen=True)
class Answer:
    slot: str  # a person attribute, "country" or "headquarters"
    value: str
    written: str  # what of the value's text (leading space included) the text so far ends with
    rest: str  # the value's text still to write


def sentence_so_far(text: str) -> str:
    return SENTENCE_END.split(text)[-1]


def topic_of(sentence: str) -> str | None:
    """The topic of the last topic word or value of the sentence (rules in the module docstring)."""
    last: tuple[int, str] | None = None
    for m in TOPIC.finditer(sentence):
        last = (m.start(), m.lastgroup)
    for m in MENTIONS.finditer(sentence):
        if m.lastgroup in MENTION_TOPICS and (last is None or m.start() >= last[0]):
            last = (m.start(), MENTION_TOPICS[m.lastgroup])
    return last[1] if last else None


class OraclePartner:
    """The oracle partner (decision rules in the module docstring)."""

    name = "oracle"

    def __init__(self, kb: KnowledgeBase, tokenizer: Tokenizer):
        self.kb = kb
        self.sp = PartnerTokenMap(tokenizer).sp  # our pieces, without the dummy prefix
        self._openers: dict[int, frozenset[str]] = {}

    def due(self, person: Person, sentence: str) -> tuple[str, str] | None:
        """The slot opened at the end of the sentence so far and its value, or None."""
        head = sentence.rstrip(" ")
        city = CITY_BEFORE_COMMA.search(head)
        if city:
            return "country", self.kb.cities[city.group(1)]
        lowered = head[:1].lower() + head[1:]  # "Born on", "At": a cue word that starts the sentence
        topic = topic_of(head)
        for cue in CUES:
            if (cue.topic is None or cue.topic == topic) and cue.pattern.search(lowered):
                value = self.slot_value(person, cue.slot, head)
                return (cue.slot, value) if value is not None else None
        return None

    def slot_value(self, person: Person, slot: str, sentence: str) -> str | None:
        """A person slot's value, or the headquarters due (rules in the module docstring)."""
        if slot in PERSON_ATTRIBUTES:
            return person.value(slot)
        employers = [m.group() for m in MENTIONS.finditer(sentence) if m.lastgroup == "employer"]
        return self.kb.employers.get(employers[-1]) if employers else person.employer_city

    def openers(self, person: Person) -> frozenset[str]:
        """The first words of the world's sentences about the person."""
        if person.person_id not in self._openers:
            self._openers[person.person_id] = frozenset(fill(t, person)[0].split()[0] for t in TEMPLATES)
        return self._openers[person.person_id]

    def candidates(self, person: Person, sentence: str) -> list[tuple[str, str]]:
        values = [(a, person.value(a)) for a in PERSON_ATTRIBUTES]
        values += [("country", person.birth_country), ("headquarters", person.employer_city)]
        for m in MENTIONS.finditer(sentence):
            if m.lastgroup == "city":
                values.append(("country", self.kb.cities[m.group()]))
            elif m.lastgroup == "employer" and m.group() in self.kb.employers:
                values.append(("headquarters", self.kb.employers[m.group()]))
        return values

    def answer(self, text: str) -> Answer | None:
        """What the oracle would write next, or None where it declines."""
        person = self.kb.person_in(text)
        if person is None:
            return None
        sentence = sentence_so_far(text)
        due = self.due(person, sentence)
        if due is not None:
            slot, value = due
            return Answer(slot, value, " ", value) if text.endswith(" ") else Answer(slot, value, "", " " + value)
        return self.inside_value(person, text, sentence)

    def inside_value(self, person: Person, text: str, sentence: str) -> Answer | None:
        best: tuple[bool, int, Answer] | None = None
        for slot, value in self.candidates(person, sentence):
            for k in range(len(value) - 1, 0, -1):
                cut = len(sentence) - k
                if cut < 0 or not sentence.endswith(value[:k]) or (cut > 0 and sentence[cut - 1].isalnum()):
                    continue
                due = self.due(person, sentence[:cut])
                is_due = due is not None and due[1] == value
                if not (is_due or value[0].isupper() or value[0].isdigit()):
                    continue
                if cut == 0 and any(word.startswith(value[:k]) for word in self.openers(person)):
                    continue
                lead = " " if text[: len(text) - k].endswith(" ") else ""
                key = (is_due, k)
                if best is None or key > best[:2]:
                    best = (*key, Answer(slot, value, lead + value[:k], value[k:]))
                break  # the longest prefix of this value
        return best[2] if best else None

    def next_token(self, answer: Answer) -> str:
        """Our tokenizer's next token of the value, in context."""
        enc = self.sp.encode(answer.written + answer.rest, return_type="offset_mapping")
        for token_id, (start, _) in zip(enc["ids"], enc["offsets"]):
            if start == len(answer.written):
                return self.sp.decode([token_id])
        return self.sp.decode([self.sp.encode(answer.rest)[0]])

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]:
        replies = []
        for q in queries:
            answer = self.answer(q.text)
            replies.append(PartnerReply((self.next_token(answer),) if answer else (), 0))
        return replies

    def release(self, key: Hashable) -> None:
        """Nothing is cached."""
