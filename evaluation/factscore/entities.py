"""The people whose biographies FactScore scores, with their prompts and the title of
their article in the knowledge source.

- paper scale: FActScore's 183 labeled entities (`prompt_entities.txt`), scored against
  FActScore's `enwiki-20230401.db` (not shipped: 22 GB, Google Drive only).
- embedded scale: the people among the embedded dwiki articles, whose own articles form
  the knowledge source (`build_embedded_knowledge`).

The prompt follows Zhao et al. (2025) for models that are not instruction-tuned: "Tell me
a bio of <name>. <name> is", with the title verbatim as the name (FActScore and LMLM keep
disambiguations such as "Sharad Kumar (athlete)"). The text to score is "<name> is" plus
the model's continuation (LMLM `experiment/eval/eval_factscore.py`): `bio_generation`.

Which embedded people. The default is the people of the validation split (25 of 221):
a model trained on the 743 training articles for many epochs could recite them, and
FactScore would then measure memorization rather than what the cascade adds. The paper
does not say whether its 183 entities were removed from its 3B-token pretraining data
(probably not); `split="all"` scores all 221 people, `split="train"` the seen ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from evaluation.factscore.human import LABELED_DIR
from evaluation.factscore.knowledge import build_knowledge_db
from pipelines.corpus import read_source
from pipelines.doc_ids import doc_id_for, split_of
from pipelines.files import read_text

BIO_PROMPT = "Tell me a bio of {name}. {name} is"
PROMPT_ENTITIES = LABELED_DIR / "prompt_entities.txt.xz"
SPLITS = ("validation", "train", "all")

_PARENTHESIS = re.compile(r"\(([^()]*)\)")
_YEAR = re.compile(r"\d{3,4}")
_LIFE = re.compile(
    r"""\b(?:born|b\.|died|d\.)\s                     # (born 1950 / died 1773)
      | \d{3,4}\s*(?:BC|AD|CE|BCE)?\s*[–-]\s*         # a year range: 1751 – 1801,
        (?:c\.\s*|\w+\ \d{1,2},?\ |\d{1,2}\ \w+\ )?   #   May 11, 1751 – August 16, 1801,
        \d{3,4}\b                                     #   30 October 1717 – 7 December 1780
    """,
    re.VERBOSE,
)
_COPULA = re.compile(r"\b(?:is|was|are|were)\b")


def bio_prompt(name: str) -> str:
    return BIO_PROMPT.format(name=name)


def bio_generation(name: str, continuation: str) -> str:
    """The text FactScore judges: the prompt's last sentence start plus the continuation."""
    return f"{name} is{continuation}"


def factscore_entities(path: str | Path = PROMPT_ENTITIES) -> list[dict[str, str]]:
    """FActScore's 183 labeled entities: [{"entity", "prompt", "title"}]."""
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    return [{"entity": n, "prompt": bio_prompt(n), "title": n} for n in names]


def is_person_article(text: str) -> bool:
    """A Wikipedia article about a person: its lead sentence has, before its first
    "is"/"was", a parenthesis with a year and a life cue ("born", "died", "b.", "d." or a
    year range), as in "Ralph Earl (May 11, 1751 – August 16, 1801) was an American painter".
    On the 834 embedded dwiki articles this finds 221, all of them people by inspection;
    it misses people whose lead has no dates (e.g. "Sun Tailor is the stage name of...")."""
    body = text.split("\n\n", 1)[-1]
    lead = body.split("\n", 1)[0]
    copula = _COPULA.search(lead)
    if copula is None:
        return False
    return any(_YEAR.search(p) and _LIFE.search(p) for p in _PARENTHESIS.findall(lead[: copula.start()]))


def embedded_people(split: str = "validation") -> list[dict[str, str]]:
    """People among the embedded dwiki articles, in corpus order: [{"entity", "prompt",
    "title", "doc_id", "split", "text"}]; `split` is "validation", "train" or "all"."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    people, seen = [], set()
    for record in read_source("embedded:dwiki"):
        title = record.title or record.text.split("\n", 1)[0]
        doc_id = record.doc_id or doc_id_for(record.text)  # as pipelines.corpus.build_corpus assigns it
        doc_split = split_of(doc_id)
        if title in seen or not is_person_article(record.text) or split not in ("all", doc_split):
            continue
        seen.add(title)
        people.append({"entity": title, "prompt": bio_prompt(title), "title": title, "doc_id": doc_id,
                       "split": doc_split, "text": record.text})  # fmt: skip
    return people


def entity_prompts(setting: str = "embedded", split: str = "validation") -> list[tuple[str, str, str]]:
    """(entity, prompt, knowledge-source title) for "embedded" (dwiki people of `split`)
    or "paper" (FActScore's 183 entities)."""
    if setting == "paper":
        rows = factscore_entities()
    elif setting == "embedded":
        rows = embedded_people(split)
    else:
        raise ValueError(f"setting must be 'embedded' or 'paper', got {setting!r}")
    return [(r["entity"], r["prompt"], r["title"]) for r in rows]


def build_embedded_knowledge(
    path: str | Path, split: str = "all", log: Callable[[str], None] | None = None
) -> dict:
    """The embedded knowledge source: the articles of the dwiki people of `split` (all
    221 by default, so any split's entities can be scored against it)."""
    people = embedded_people(split)
    stats = build_knowledge_db(path, [(p["title"], p["text"]) for p in people], log=log)
    return {**stats, "split": split, "people": len(people)}
