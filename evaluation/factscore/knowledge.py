"""FActScore's knowledge source: an SQLite file with one table `documents(title PRIMARY
KEY, text)` whose `text` holds an article's passages joined by FActScore's separator,
and BM25 retrieval of the top passages of one topic (FActScore `factscore/retrieval.py`,
`DocDB` and `Retrieval`, retrieval_type "bm25").

The reader opens any file in that format, including FActScore's own 22 GB
`enwiki-20230401.db`. The writer builds one from (title, text) articles. FActScore cuts
passages at 256 RoBERTa-large tokens; we have no RoBERTa tokenizer offline, so
`approx_roberta_tokens` estimates the count (see its docstring for the calibration).
"""

from __future__ import annotations

import lzma
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from rank_bm25 import BM25Okapi  # the scorer FActScore imports (retrieval.py, atomic_facts.py)

from pipelines.corpus import EMBEDDED_DIR
from pipelines.files import atomic_path, fingerprint

SPECIAL_SEPARATOR = "####SPECIAL####SEPARATOR####"  # FActScore retrieval.py
MAX_PASSAGE_TOKENS = 256  # FActScore retrieval.py MAX_LENGTH (RoBERTa-large tokens, <s> and </s> included)
PASSAGE_START, PASSAGE_END = "<s>", "</s>"  # RoBERTa's bos/eos, kept in the DB text around each paragraph
FACTSCORE_DATA_DIR = EMBEDDED_DIR / "factscore"
SAMPLE_DB_TSV = FACTSCORE_DATA_DIR / "enwiki-20230401-10samples.tsv.xz"

# GPT-2's pre-tokenizer (RoBERTa uses GPT-2's byte-level BPE), with Python's `re` classes.
_PRETOKEN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+")


class KnowledgeSourceError(ValueError):
    """A knowledge-source file or record that cannot be used; the message names it."""


def pretokens(text: str) -> list[str]:
    """GPT-2/RoBERTa pre-tokens: words with their leading space, digit runs, punctuation runs."""
    return _PRETOKEN.findall(text)


def approx_roberta_tokens(pretoken: str) -> int:
    """Estimated RoBERTa-large tokens of one pre-token: 1, plus 1 for every 4 characters
    beyond the 4th. Calibrated on the 19 full (256-token) passages of FActScore's DB in
    `enwiki-20230401-10samples.tsv`: estimate / true count = 0.99 on average (sd 0.08);
    a whitespace word count would be 0.68 (about 174 words per passage)."""
    return 1 + max(0, len(pretoken.strip()) - 4) // 4


def article_paragraphs(title: str, text: str) -> list[str]:
    """An article in dwiki's layout ("Title\\n\\nparagraph\\nSection.\\nparagraph...") as
    the paragraph list FActScore's DB was built from: the title line dropped and prepended
    to the first paragraph, a short heading line ("Early life.") joined to the paragraph
    after it (the DB shows `<s>Title First paragraph...</s><s>Section. Text...</s>`)."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if lines and lines[0] == title.strip():
        lines = lines[1:]
    paragraphs: list[str] = []
    heading = ""
    for line in lines:
        if len(line.split()) <= 5 and line.endswith("."):
            heading = f"{heading} {line}".strip()
            continue
        paragraphs.append(f"{heading} {line}" if heading else line)
        heading = ""
    if heading:
        paragraphs.append(heading)
    if paragraphs:
        paragraphs[0] = f"{title.strip()} {paragraphs[0]}"
    return paragraphs


def split_passages(paragraphs: Iterable[str], max_tokens: int = MAX_PASSAGE_TOKENS) -> list[str]:
    """FActScore's `DocDB.build_db` passage split: each paragraph is `<s>` + text + `</s>`;
    paragraphs are appended to the current passage while it has room, and one that does
    not fit fills the rest of the passage and continues in new passages of `max_tokens`.
    We cut between pre-tokens (FActScore cuts between BPE tokens, sometimes inside a word)
    and, like FActScore, drop passages holding nothing but `<s>`/`</s>`."""
    passages: list[list[str]] = [[]]
    used = [0]
    for paragraph in paragraphs:
        pieces = [PASSAGE_START, *pretokens(paragraph), PASSAGE_END]
        costs = [1, *(approx_roberta_tokens(p) for p in pieces[1:-1]), 1]
        for piece, cost in zip(pieces, costs):
            if used[-1] + cost > max_tokens and passages[-1]:
                passages.append([])
                used.append(0)
            passages[-1].append(piece)
            used[-1] += cost
    texts = ["".join(p) for p in passages]
    return [t for t in texts if t.replace(PASSAGE_START, "").replace(PASSAGE_END, "").strip()]


def article_db_text(title: str, text: str, max_tokens: int = MAX_PASSAGE_TOKENS) -> str:
    """The DB `text` of one article: its passages joined by FActScore's separator."""
    return SPECIAL_SEPARATOR.join(split_passages(article_paragraphs(title, text), max_tokens))


def write_knowledge_db(path: str | Path, documents: Iterable[tuple[str, str]]) -> dict:
    """Write (title, db_text) rows as a FActScore-format SQLite file, atomically. A title
    seen before is skipped, as in FActScore. Returns counts and a fingerprint of the rows."""
    path = Path(path)
    stats = {"documents": 0, "passages": 0, "skipped_duplicate_titles": 0}
    digest = []
    with atomic_path(path) as tmp:
        con = sqlite3.connect(tmp)
        try:
            con.execute("CREATE TABLE documents (title PRIMARY KEY, text);")
            seen: set[str] = set()
            for title, db_text in documents:
                if title in seen:
                    stats["skipped_duplicate_titles"] += 1
                    continue
                seen.add(title)
                con.execute("INSERT INTO documents VALUES (?,?)", (title, db_text))
                stats["documents"] += 1
                stats["passages"] += db_text.count(SPECIAL_SEPARATOR) + 1
                digest.append(fingerprint(title, db_text))
            con.commit()
        finally:
            con.close()
    stats["fingerprint"] = fingerprint(digest)
    return stats


def build_knowledge_db(
    path: str | Path,
    articles: Iterable[tuple[str, str]],
    max_tokens: int = MAX_PASSAGE_TOKENS,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Build a knowledge source from (title, article text) pairs (dwiki layout)."""

    def rows() -> Iterator[tuple[str, str]]:
        for i, (title, text) in enumerate(articles, start=1):
            if not title.strip():
                raise KnowledgeSourceError(f"article {i}: empty title")
            db_text = article_db_text(title, text, max_tokens)
            if not db_text:
                raise KnowledgeSourceError(f"article {i} ({title!r}): no text")
            if log and i % 1000 == 0:
                log(f"knowledge source: {i} articles")
            yield title, db_text

    stats = write_knowledge_db(path, rows())
    stats["max_passage_tokens"] = max_tokens
    return stats


def read_factscore_tsv(path: str | Path = SAMPLE_DB_TSV) -> list[tuple[str, str]]:
    """(title, db_text) rows of a TSV export of FActScore's DB (`row_id \\t text \\t title`),
    such as `enwiki-20230401-10samples.tsv[.xz]`."""
    path = Path(path)
    opener = lzma.open if path.suffix == ".xz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise KnowledgeSourceError(f"{path}:line {lineno}: expected 3 tab-separated fields, found {len(parts)}")
            rows.append((parts[2], parts[1]))
    return rows


class KnowledgeSource:
    """Read-only access to a FActScore-format SQLite knowledge source."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no knowledge source here (build it, or point at enwiki-20230401.db)")
        self._con = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        tables = {row[0] for row in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "documents" not in tables:
            raise KnowledgeSourceError(f"{self.path}: no `documents` table (tables: {sorted(tables)})")

    def __enter__(self) -> KnowledgeSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    @property
    def identity(self) -> str:
        """File name and size: cheap to compute for FActScore's 22 GB DB, stable across machines."""
        return f"{self.path.name}:{self.path.stat().st_size}"

    def __contains__(self, title: str) -> bool:
        return self._con.execute("SELECT 1 FROM documents WHERE title = ?", (title,)).fetchone() is not None

    def __len__(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def titles(self) -> Iterator[str]:
        for (title,) in self._con.execute("SELECT title FROM documents"):
            yield title

    def passages(self, title: str) -> list[dict[str, str]]:
        """The topic's passages as FActScore's `get_text_from_title` returns them:
        [{"title", "text"}], `text` still holding `<s>`/`</s>`."""
        rows = self._con.execute("SELECT text FROM documents WHERE title = ?", (title,)).fetchall()
        if len(rows) != 1:
            raise KeyError(f"{self.path}: no document titled {title!r} (topics must be titles of the knowledge source)")
        return [{"title": title, "text": text} for text in rows[0][0].split(SPECIAL_SEPARATOR)]


def passage_plain_text(text: str) -> str:
    """A passage without RoBERTa's `<s>`/`</s>`, as FActScore strips them (joined paragraphs
    touch: "...1929.</s><s>Awards." becomes "...1929.Awards.")."""
    return text.replace(PASSAGE_START, "").replace(PASSAGE_END, "")


class BM25Retrieval:
    """FActScore's `Retrieval.get_passages` with BM25: the query is `topic + " " + atom`,
    scored against the topic's own passages only (whitespace tokens, `<s>`/`</s>` removed,
    case kept), top k by descending score (stable: equal scores keep passage order)."""

    def __init__(self, knowledge: KnowledgeSource):
        self.knowledge = knowledge
        self._indexes: dict[str, tuple[list[dict[str, str]], BM25Okapi]] = {}

    def _index(self, topic: str) -> tuple[list[dict[str, str]], BM25Okapi]:
        if topic not in self._indexes:
            passages = self.knowledge.passages(topic)
            self._indexes[topic] = (passages, BM25Okapi([passage_plain_text(p["text"]).split() for p in passages]))
        return self._indexes[topic]

    def get_passages(self, topic: str, atom: str, k: int = 5) -> list[dict[str, str]]:
        passages, bm25 = self._index(topic)
        query = topic + " " + atom.strip()
        order = np.argsort(-bm25.get_scores(query.split()), kind="stable")[:k]
        return [passages[i] for i in order]
