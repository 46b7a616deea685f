"""Exact evaluation on the synthetic-biography world (pipelines.biographies): no judge, the
knowledge base is the truth.

Factual precision (the FactScore analogue). A generation continues the prompt
"{name}\\n\\n{name}" (the corpus' title line and the sentence start). Its atomic facts are
the attribute values it states, found in each sentence (a maximal run of text without
".", "!", "?" or a line break) by these patterns, in text order:
- birth_date: "<Month> <day>, <year>" (a full date; "March 1970" states nothing);
- university: "University of X", "X University", "X College" or "X Institute of Technology",
  and employer: "X <suffix>" with a suffix of the world's employers ("Analytics", "Labs", ...),
  where X is a stem of the world's names (`NAME_STEMS`: the stems of its universities, e.g.
  "Westmoor" of "University of Westmoor", and of its employers, e.g. "Ivers"). A name built
  from the world's stems and forms is stated whether or not the world has it, so a model's
  recombination ("Brookfield College" for "Brookfield University", "Ivers Dynamics" for
  "Ivers Labs", "Marston Labs") is a stated, unsupported fact; a word that is no stem ("At" in
  "At University of Westmoor") never starts a name;
- field: one of the world's fields of study, as a whole word;
- city: one of the world's cities. Its attribute is set by the last cue before it in the
  sentence: a birth cue ("born", "native", "birthplace") makes it birth_city, an employer
  cue ("works", "employed", "employer", "joined", "position", "company", "based",
  "headquartered", or an employer name) makes it employer_city; without a cue it is
  `city`, supported when it is either of the person's cities;
- country: one of the world's countries.
A person fact (birth_date, birth_city, university, field, employer) is supported when it
equals the prompted person's value. The structural facts are checked against the world's
structure: an employer_city against the headquarters of the last employer named before it
in the sentence (the person's employer when none is), a country against the country of
the last city before it in the sentence (the person's birth country when none is).
Precision per generation = supported / stated; like FactScore, a generation stating no
fact is not scored and the score is the mean over generations that state one. Reported
per attribute and by the popularity bucket of the prompted person.

Fact leakage (the PopQA analogue): one sentence start per person attribute
(`COMPLETIONS`), 3-shot, greedy, `<CALL>` at -inf, gold answer contained
(`evaluation.measures.leakage.evaluate_questions`), by bucket.

The oracle partner of the cascade: `evaluation.testbed.oracle`; a model's whole evaluation:
`evaluation.testbed.evaluate`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from evaluation.measures.leakage import Question
from pipelines.biographies import (
    CITIES,
    DATE_PATTERN,
    EMPLOYER_STEMS,
    EMPLOYER_SUFFIXES,
    FIELDS,
    PERSON_ATTRIBUTES,
    SOURCE,
    UNIVERSITIES,
    Person,
    read_knowledge_base,
)

PROMPT = "{name}\n\n{name}"
COMPLETIONS = {
    "birth_date": "{name} was born on",
    "birth_city": "{name} was born in",
    "university": "{name} graduated from",
    "field": "{name} studied",
    "employer": "{name} works for",
}
BIRTH_CUES = frozenset({"born", "native", "birthplace"})
EMPLOYER_CUES = frozenset({"works", "employed", "employer", "joined", "position", "company", "based", "headquartered"})
SENTENCE = re.compile(r"[^.!?\n]+")
SENTENCE_END = re.compile(r"[.!?]\s+|\n")


def words_pattern(values) -> str:
    """A regex alternation of the strings, longest first (so "United States" beats "United")."""
    return "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))


UNIVERSITY_FORMS = ("University of {}", "{} University", "{} College", "{} Institute of Technology")


def university_stem(university: str) -> str:
    """X of a university name of one of `UNIVERSITY_FORMS`."""
    for form in UNIVERSITY_FORMS:
        before, after = form.split("{}")
        if university.startswith(before) and university.endswith(after):
            return university[len(before):len(university) - len(after)]
    raise ValueError(f"{SOURCE}: university {university!r} has none of the forms {UNIVERSITY_FORMS}")


NAME_STEMS = (*(university_stem(u) for u in UNIVERSITIES), *EMPLOYER_STEMS)
_STEM = rf"(?:{words_pattern(NAME_STEMS)})"
MENTIONS = re.compile(
    rf"(?P<birth_date>{DATE_PATTERN.pattern})"
    rf"|(?P<university>\b(?:{'|'.join(re.escape(f).replace(re.escape('{}'), _STEM) for f in UNIVERSITY_FORMS)})\b)"
    rf"|(?P<employer>\b{_STEM} (?:{words_pattern(EMPLOYER_SUFFIXES)})\b)"
    rf"|(?P<field>\b(?:{words_pattern(FIELDS)})\b)"
    rf"|(?P<city>\b(?:{words_pattern(CITIES)})\b)"
    rf"|(?P<country>\b(?:{words_pattern(set(CITIES.values()))})\b)"
    rf"|(?P<cue>\b(?i:{words_pattern(BIRTH_CUES | EMPLOYER_CUES)})\b)"
)


@dataclass(frozen=True)
class AtomicFact:
    attribute: str  # a person attribute, "city", "employer_city" or "country"
    value: str
    start: int  # character offset in the generation
    supported: bool


class KnowledgeBase:
    """The people of the world by name, their buckets, and the structure."""

    def __init__(self, people: Sequence[dict], structure: dict):
        person_fields = {f.name for f in fields(Person)}
        self.people = {row["name"]: Person(**{k: row[k] for k in person_fields}) for row in people}
        self.buckets = {row["name"]: row["bucket"] for row in people}
        self.employers: dict[str, str] = structure["employers"]
        self.cities: dict[str, str] = structure["cities"]
        self.source: str = structure["source"]
        self._names = re.compile(words_pattern(self.people))

    @classmethod
    def load(cls, kb_dir: str | Path) -> KnowledgeBase:
        return cls(*read_knowledge_base(kb_dir))

    def person_in(self, text: str) -> Person | None:
        """The last person of the knowledge base named (full name) in `text`."""
        names = self._names.findall(text)
        return self.people[names[-1]] if names else None

    def in_bucket(self, bucket: str) -> list[Person]:
        return sorted((p for n, p in self.people.items() if self.buckets[n] == bucket), key=lambda p: p.person_id)


def atomic_facts(text: str, person: Person, kb: KnowledgeBase) -> list[AtomicFact]:
    """The attribute values stated in `text` about `person`, checked (rules in the module
    docstring)."""
    facts = []
    for sentence in SENTENCE.finditer(text):
        cue = city = employer = None
        for m in MENTIONS.finditer(text, sentence.start(), sentence.end()):
            kind, value = m.lastgroup, m.group(m.lastgroup)
            if kind == "cue":
                cue = "birth" if value.lower() in BIRTH_CUES else "employer"
                continue
            if kind == "city":
                kind = {"birth": "birth_city", "employer": "employer_city"}.get(cue, "city")
                supported = {
                    "birth_city": value == person.birth_city,
                    "employer_city": value == kb.employers.get(employer, person.employer_city),
                    "city": value in (person.birth_city, person.employer_city),
                }[kind]
                city = value
            elif kind == "country":
                supported = value == (kb.cities[city] if city else person.birth_country)
            else:
                supported = value == person.value(kind)
                if kind == "employer":
                    cue, employer = "employer", value
            facts.append(AtomicFact(kind, value, m.start(), supported))
    return facts


def precision(generations: Sequence[str], people: Sequence[Person], kb: KnowledgeBase) -> dict:
    """FactScore-style precision (mean over generations stating a fact), the pooled
    precision of all facts, both per attribute, and each generation's stated and supported
    facts (in the order of `generations`: the units of the report's intervals)."""
    per_gen, by_attribute, counts = [], defaultdict(lambda: [0, 0]), []
    stated = 0
    for text, person in zip(generations, people, strict=True):
        facts = atomic_facts(text, person, kb)
        stated += len(facts)
        counts.append((len(facts), sum(f.supported for f in facts)))
        if facts:
            per_gen.append(np.mean([f.supported for f in facts]))
        for f in facts:
            by_attribute[f.attribute][0] += f.supported
            by_attribute[f.attribute][1] += 1
    supported = sum(s for s, _ in by_attribute.values())
    return {
        "generations": len(generations),
        "responded": len(per_gen),
        "precision": float(np.mean(per_gen)) if per_gen else None,
        "pooled_precision": supported / stated if stated else None,
        "facts_per_generation": stated / max(len(generations), 1),
        "supported_per_generation": supported / max(len(generations), 1),
        "by_attribute": {a: {"stated": n, "supported": s, "precision": s / n} for a, (s, n) in sorted(by_attribute.items())},
        "stated_by_generation": [n for n, _ in counts],
        "supported_by_generation": [s for _, s in counts],
    }


def questions(people: Sequence[Person]) -> list[Question]:
    return [Question(COMPLETIONS[a].format(name=p.name), (p.value(a),), a) for p in people for a in PERSON_ATTRIBUTES]
