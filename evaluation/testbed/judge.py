"""The exact acceptability judge of the synthetic world (section 3 of the paper; issue 20).

The true texts about a person are the documents the world could write about that person,
as `pipelines.biographies.biography` builds them: the title line "{name}\\n\\n", then the
sentences joined by one space: one birth sentence first, then the education sentence and
the career sentence in either order, with zero, one or two distinct filler sentences put
anywhere after the birth sentence; each sentence is one of the world's templates of its
kind (`BIRTH_TEMPLATES`, ...) filled with the person's true values and pronouns (`fill`).
The document ends after its last sentence (no trailing space or line break).

A query (a document's `starting_text` and a `proposed_next_token`, spaces included) is
acceptable (1) iff starting_text + proposed_next_token is a prefix of some true text about
the document's person, else unacceptable (0). An end-of-document proposal (the token's text
"") is acceptable iff starting_text is a whole true text. The judgement is None when the
document's person is unknown (a doc_id not in the world). `reference_next_token` is not
read: the language decides, not the one gold document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from pipelines.biographies import BIRTH_TEMPLATES, CAREER_TEMPLATES, EDUCATION_TEMPLATES, FILLER_TEMPLATES, Person, World, fill

MAX_FILLERS = 2


class Query(Protocol):
    doc_id: str
    starting_text: str
    proposed_next_token: str
    reference_next_token: str


@dataclass(frozen=True)
class State:
    """Which sentences a document has written so far."""

    birth: bool = False
    education: bool = False
    career: bool = False
    fillers: frozenset[int] = frozenset()

    @property
    def complete(self) -> bool:
        return self.birth and self.education and self.career


class Biographies:
    """The language of true texts about one person (rules in the module docstring)."""

    def __init__(self, person: Person):
        sentences = lambda templates: tuple(fill(t, person)[0] for t in templates)  # noqa: E731
        self.title = f"{person.name}\n\n"
        self.birth, self.education, self.career = (sentences(t) for t in (BIRTH_TEMPLATES, EDUCATION_TEMPLATES, CAREER_TEMPLATES))
        self.fillers = sentences(FILLER_TEMPLATES)
        self.next_sentences = cache(self._next_sentences)

    def _next_sentences(self, state: State) -> list[tuple[str, State]]:
        """Every sentence that may come next, with the state after it."""
        if not state.birth:
            return [(s, State(birth=True)) for s in self.birth]
        out = []
        if not state.education:
            out += [(s, State(True, True, state.career, state.fillers)) for s in self.education]
        if not state.career:
            out += [(s, State(True, state.education, True, state.fillers)) for s in self.career]
        if len(state.fillers) < MAX_FILLERS:
            out += [(s, State(True, state.education, state.career, state.fillers | {k}))
                    for k, s in enumerate(self.fillers) if k not in state.fillers]
        return out

    def accepts(self, text: str, whole: bool) -> bool:
        """`text` is a prefix of a true text (`whole`: is a true text)."""
        if not text.startswith(self.title):
            return not whole and self.title.startswith(text)
        return self._rest(text[len(self.title):], State(), whole)

    def _rest(self, rest: str, state: State, whole: bool) -> bool:
        # `rest` starts where the next sentence starts
        for sentence, after in self.next_sentences(state):
            if not whole and sentence.startswith(rest):
                return True
            if rest == sentence and after.complete:
                return True
            if rest.startswith(sentence + " ") and self._rest(rest[len(sentence) + 1:], after, whole):
                return True
        return False


class ExactJudge:
    """Judges tokens exactly against the world (rules in the module docstring)."""

    name = "exact"

    def __init__(self, world: World):
        people = {p.person_id: p for p in world.people}
        self.person_of = {d.doc_id: people[d.person_id] for d in world.documents}
        self.language = cache(Biographies)

    def judge_one(self, doc_id: str, starting_text: str, proposed_next_token: str) -> int | None:
        person = self.person_of.get(doc_id)
        if person is None:
            return None
        end = proposed_next_token == ""
        return int(self.language(person).accepts(starting_text + proposed_next_token, whole=end))

    def judge(self, queries: Sequence[Query]) -> list[int | None]:
        return [self.judge_one(q.doc_id, q.starting_text, q.proposed_next_token) for q in queries]
