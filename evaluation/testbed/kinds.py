"""Token kinds of the synthetic world and the regime ratio R (/work/shared/TESTBED.md, "The
ratio that decides whether LaCy's selection can help").

Kinds (`TOKEN_KINDS`, by character spans of the world's documents):
- head_value, tail_value, unseen_value: a value of a person attribute (birth date, birth
  city, university, field, employer), by the bucket of the document's person in the
  knowledge base;
- structural_value: a birth country or an employer's city (learnable from structure);
- title_name: the name in the title line (the name's first mention in the document);
- other: everything else.
A token is of a kind when it covers a letter or digit of a character of that kind (as
`call_decisions` counts value tokens: " Lyon" is a value token, "," after it is not); a
token covering letters of two kinds (none in the world's texts) takes the later in
`TOKEN_KINDS`.

R = (fact-labelled tokens the small model cannot learn) / (call fraction x all tokens),
with the unlearnable ones the tail and unseen person values and the title name, and the
call fraction A.4's 15%; `R_values` counts the tail and unseen values only. Fact-labelled:
`token_class == FACT` (spaCy, A.2.1). R >= 1: LaCy's quota is spent on what cannot be
learned; R < 1: the rest of the quota goes to facts the model could have learned.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evaluation.testbed.exact import KnowledgeBase
from pipelines.biographies import PERSON_ATTRIBUTES, Document, SyntheticConfig, World, generate_world
from pipelines.classes import FACT
from pipelines.shards import TOKEN_SCHEMA, ShardError, read_manifest, read_table
from pipelines.tokenizer import MODEL_FILE, Tokenizer
from trainer.masks import CALL_FRACTION

TOKEN_KINDS = ("other", "title_name", "structural_value", "head_value", "tail_value", "unseen_value")
OTHER, TITLE_NAME, STRUCTURAL_VALUE = 0, 1, 2
VALUE_OF_BUCKET = {"head": 3, "tail": 4, "unseen": 5}
UNLEARNABLE = ("tail_value", "unseen_value", "title_name")
UNLEARNABLE_VALUES = ("tail_value", "unseen_value")


def character_kinds(doc: Document, bucket: str) -> np.ndarray:
    """A code of `TOKEN_KINDS` per character of the document's text; `bucket` is its
    person's. Only letters and digits get a kind other than `other`."""
    kind = np.zeros(len(doc.text), dtype=np.int8)
    if doc.text.startswith(doc.title + "\n"):
        kind[: len(doc.title)] = TITLE_NAME
    for span in doc.spans:
        kind[span.start:span.end] = VALUE_OF_BUCKET[bucket] if span.attribute in PERSON_ATTRIBUTES else STRUCTURAL_VALUE
    alnum = np.fromiter((c.isalnum() for c in doc.text), dtype=bool, count=len(doc.text))
    kind[~alnum] = OTHER
    return kind


def token_kinds(char_kind: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The kind of each token [start, end): the highest code among its characters'."""
    out = np.zeros(len(starts), dtype=np.int8)
    for code in range(1, len(TOKEN_KINDS)):
        covered = np.concatenate([[0], np.cumsum(char_kind == code)])
        out[covered[ends] > covered[starts]] = code
    return out


def regime(tokens: np.ndarray, facts: np.ndarray, call_fraction: float = CALL_FRACTION) -> dict:
    """The shares and R from token counts per kind (`tokens`) and fact-labelled token counts
    per kind (`facts`), each indexed by the codes of `TOKEN_KINDS`."""
    total = int(tokens.sum())
    quota = call_fraction * total
    index = {k: i for i, k in enumerate(TOKEN_KINDS)}
    return {
        "tokens": total,
        "fact_fraction": float(facts.sum() / total),
        "share": {k: float(tokens[i] / total) for k, i in index.items()},
        "fact_labelled": {k: float(facts[i] / tokens[i]) if tokens[i] else None for k, i in index.items()},
        "call_fraction": call_fraction,
        "R": float(sum(facts[index[k]] for k in UNLEARNABLE) / quota),
        "R_values": float(sum(facts[index[k]] for k in UNLEARNABLE_VALUES) / quota),
    }


def documents_with_kinds(token_dir: str | Path, kb: KnowledgeBase, world: World, split: str = "train") -> Iterator[tuple[str, np.ndarray, np.ndarray, Document]]:
    """(doc_id, token kinds, token classes, the world's document) of every document of `split` in
    a token dataset of the world (`token_shards/`: shards, manifest and tokenizer), the kinds
    from the world's text and its person's bucket; the shards' ids must be that text tokenized."""
    token_dir = Path(token_dir)
    docs = {d.doc_id: d for d in world.documents}
    bucket = {p.person_id: kb.buckets[p.name] for p in world.people}
    tok = Tokenizer(token_dir / MODEL_FILE)
    for entry in read_manifest(token_dir)["shards"]:
        path = token_dir / entry["file"]
        table = read_table(path, TOKEN_SCHEMA)
        for doc_id, doc_split, ids, cls in zip(*(table.column(c).to_pylist() for c in TOKEN_SCHEMA.names)):
            if doc_split != split:
                continue
            if doc_id not in docs:
                raise ShardError(f"{path}: doc_id {doc_id} is not a document of {world.config.source()}")
            doc = docs[doc_id]
            own, starts, ends = tok.encode_with_offsets(doc.text)
            if own.tolist() != ids:
                raise ShardError(f"{path}: doc_id {doc_id}: input_ids are not the world's text tokenized by {tok.path}")
            yield doc_id, token_kinds(character_kinds(doc, bucket[doc.person_id]), starts, ends), np.asarray(cls), doc


def measure_regime(token_dir: str | Path, kb: KnowledgeBase, world: World | None = None, split: str = "train",
                   call_fraction: float = CALL_FRACTION) -> dict:
    """`regime` of the documents of `split` in a token dataset of the world (`world`, by
    default generated from the knowledge base's source)."""
    world = world or generate_world(SyntheticConfig.from_source(kb.source))
    tokens, facts = np.zeros(len(TOKEN_KINDS), np.int64), np.zeros(len(TOKEN_KINDS), np.int64)
    for _, kinds, cls, _ in documents_with_kinds(token_dir, kb, world, split):
        tokens += np.bincount(kinds, minlength=len(TOKEN_KINDS))
        facts += np.bincount(kinds[cls == FACT], minlength=len(TOKEN_KINDS))
    return {"split": split, **regime(tokens, facts, call_fraction)}


PROBE_PEOPLE = 16  # per bucket


def probe_documents(token_dir: str | Path, kb: KnowledgeBase, people: int = PROBE_PEOPLE) -> tuple[list[str], list[np.ndarray], list[str]]:
    """The training probe (`trainer.probe.write_probe`): one train document of each of the
    first `people` head and tail people (the first in the shards' order), with the kind of every
    token; returns (doc_ids, kinds, kind names)."""
    world = generate_world(SyntheticConfig.from_source(kb.source))
    wanted = {p.person_id: b for b in ("head", "tail") for p in kb.in_bucket(b)[:people]}
    chosen: dict[int, tuple[str, np.ndarray]] = {}
    for doc_id, kinds, _, doc in documents_with_kinds(token_dir, kb, world):
        if doc.person_id in wanted and doc.person_id not in chosen:
            chosen[doc.person_id] = (doc_id, kinds)
    ordered = [chosen[p] for p in wanted if p in chosen]
    return [d for d, _ in ordered], [k for _, k in ordered], list(TOKEN_KINDS)
