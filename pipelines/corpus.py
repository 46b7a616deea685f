"""The corpus: documents with a stable `doc_id`, `title`, `text`, `source` and a
deterministic 90/10 `split`, read from the embedded sample, local files or a Hugging Face
dataset. Bad records fail with the file and record named, or are skipped and counted."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from spacy.lang.en.stop_words import STOP_WORDS

from pipelines.files import RecordError, atomic_path, clean_stale_tmp, fingerprint, iter_jsonl, read_json_file, write_json
from pipelines.shards import MANIFEST, read_table, shard_name, write_table

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "data" / "embedded"
LMLM_FILES = (  # the 830 Llama-annotated articles first, then the GPT-4o ones (71 repeat)
    EMBEDDED_DIR / "lmlm" / "dwiki-eval1k_annotator_llama-v6.1_cleaned.json.xz",
    EMBEDDED_DIR / "lmlm" / "dwiki-eval100_chatgpt_gpt4o-v7.1_cleaned.json.xz",
)
LEADS_FILE = EMBEDDED_DIR / "wikipedia" / "ovos_vital_articles_summaries_en-us.json.xz"
EMBEDDED_SOURCES = ("embedded:dwiki", "embedded:wikipedia-leads")
SYNTHETIC_SOURCE = "embedded:synthetic-bios"  # pipelines.synthetic; parameters after "?"

CORPUS_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
    ]
)
_WORD = re.compile(r"[^\W\d_]+")


class CorpusError(RecordError):
    """A record that cannot be used; the message names the file and the record."""


@dataclass(frozen=True)
class Record:
    text: str
    title: str | None
    doc_id: str | None
    origin: str  # "<file>:<record>" for messages


@dataclass(frozen=True)
class CorpusConfig:
    sources: tuple[str, ...] = ("embedded:dwiki",)
    validation_fraction: float = 0.1  # A.4.3: a random 10% is the validation set
    min_stopword_fraction: float = 0.08  # below this, a document of >= 12 words is not English


@dataclass
class CorpusReport:
    documents: Counter = field(default_factory=Counter)  # per source
    splits: Counter = field(default_factory=Counter)
    skipped: list[dict] = field(default_factory=list)  # {"origin", "reason"}

    def skip(self, record: Record, reason: str) -> None:
        self.skipped.append({"origin": record.origin, "reason": reason})

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(s["reason"] for s in self.skipped))


def doc_id_for(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def _unit_hash(key: str) -> float:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def split_of(doc_id: str, validation_fraction: float = 0.1) -> str:
    return "validation" if _unit_hash("split:" + doc_id) < validation_fraction else "train"


def shard_of(doc_id: str, num_shards: int) -> int:
    return int(_unit_hash("shard:" + doc_id) * num_shards)


def english_stopword_fraction(text: str) -> tuple[float, int]:
    words = _WORD.findall(text[:20_000])
    if not words:
        return 0.0, 0
    return sum(w.lower() in STOP_WORDS for w in words) / len(words), len(words)


# ---------------------------------------------------------------- readers


def read_source(source: str) -> Iterator[Record]:
    """`embedded:dwiki`, `embedded:wikipedia-leads`, `embedded:synthetic-bios[?params]`
    (pipelines.synthetic), a .jsonl[.gz|.xz]/.parquet file or a
    directory of them, or `hf:<dataset id or local dir>[@split]`."""
    if source == "embedded:dwiki":
        yield from _read_lmlm(LMLM_FILES)
    elif source == "embedded:wikipedia-leads":
        yield from _read_leads(LEADS_FILE)
    elif source.split("?", 1)[0] == SYNTHETIC_SOURCE:
        yield from _read_synthetic(source)
    elif source.startswith("hf:"):
        yield from _read_hf(source[3:])
    else:
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if _is_data_file(p))
            if not files:
                raise CorpusError(f"{path}: no .jsonl, .jsonl.gz, .jsonl.xz or .parquet files")
            for f in files:
                yield from _read_file(f)
        elif path.is_file():
            yield from _read_file(path)
        else:
            raise CorpusError(f"{source}: no such file or directory, and not a known source")


def _is_data_file(p: Path) -> bool:
    return p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.xz", ".parquet"))


def _read_file(path: Path) -> Iterator[Record]:
    if path.name.endswith(".parquet"):
        yield from _read_rows(pq.read_table(path).to_pylist(), str(path), "row")
    elif path.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.xz")):
        yield from _read_jsonl(path)
    else:
        raise CorpusError(f"{path}: unsupported format (use .jsonl, .jsonl.gz, .jsonl.xz or .parquet)")


def _read_jsonl(path: Path) -> Iterator[Record]:
    for lineno, row in iter_jsonl(path):
        yield _record(row, f"{path}:line {lineno}")


def _read_rows(rows: Iterable[dict], name: str, unit: str) -> Iterator[Record]:
    for i, row in enumerate(rows):
        yield _record(row, f"{name}:{unit} {i}")


def _record(row: object, origin: str) -> Record:
    if not isinstance(row, dict):
        raise CorpusError(f"{origin}: expected a JSON object with a 'text' field")
    if "text" not in row:
        raise CorpusError(f"{origin}: missing 'text' field (fields: {sorted(row)[:10]})")
    text = row["text"]
    if not isinstance(text, str):
        raise CorpusError(f"{origin}: 'text' is {type(text).__name__}, expected a string")
    doc_id = row.get("doc_id", row.get("id"))
    title = row.get("title")
    return Record(
        text=text,
        title=str(title) if title is not None else None,
        doc_id=str(doc_id) if doc_id is not None else None,
        origin=origin,
    )


def _read_hf(spec: str) -> Iterator[Record]:
    import datasets  # heavy; only for this source

    name, _, split = spec.partition("@")
    try:
        ds = datasets.load_dataset(name, split=split or "train")
    except Exception as e:  # noqa: BLE001 - re-raised with the source named
        raise CorpusError(f"hf:{spec}: could not load the dataset ({type(e).__name__}: {e})") from e
    yield from _read_rows(ds, f"hf:{spec}", "row")


def _read_synthetic(source: str) -> Iterator[Record]:
    from pipelines import synthetic  # it imports this module (split_of)

    for doc in synthetic.iter_documents(source):
        yield Record(text=doc.text, title=doc.title, doc_id=doc.doc_id, origin=f"{source}:{doc.doc_id}")


def _read_lmlm(files: Iterable[Path]) -> Iterator[Record]:
    seen: set[str] = set()
    for path in files:
        for i, ex in enumerate(read_json_file(path)["examples"]):
            text = ex["text"]
            if text in seen:  # the GPT-4o file repeats 71 of the Llama-annotated articles
                continue
            seen.add(text)
            yield Record(text=text, title=text.split("\n", 1)[0], doc_id=None, origin=f"{path.name}:example {i}")


def _read_leads(path: Path) -> Iterator[Record]:
    for key, art in read_json_file(path).items():
        # dwiki's layout: the title line, a blank line, the article
        yield Record(
            text=f"{art['title']}\n\n{art['extract']}", title=art["title"], doc_id=None, origin=f"{path.name}:{key}"
        )


# ---------------------------------------------------------------- the corpus


def build_corpus(config: CorpusConfig) -> tuple[pa.Table, CorpusReport]:
    """Read every source, drop empty, duplicate and non-English documents (counted in the
    report), and assign the deterministic split. Conflicting doc_ids are an error."""
    report = CorpusReport()
    columns: dict[str, list[str]] = {name: [] for name in CORPUS_SCHEMA.names}
    origin_of: dict[str, tuple[str, str]] = {}  # doc_id -> (origin, text hash)
    for source in config.sources:
        for rec in read_source(source):
            if not rec.text.strip():
                report.skip(rec, "empty")
                continue
            frac, n_words = english_stopword_fraction(rec.text)
            if n_words >= 12 and frac < config.min_stopword_fraction:
                report.skip(rec, "non_english")
                continue
            text_hash = doc_id_for(rec.text)
            doc_id = rec.doc_id or text_hash
            if doc_id in origin_of:
                first_origin, first_hash = origin_of[doc_id]
                if first_hash != text_hash:
                    raise CorpusError(
                        f"{rec.origin}: doc_id {doc_id!r} already used by {first_origin} for a different text"
                    )
                report.skip(rec, "duplicate")
                continue
            origin_of[doc_id] = (rec.origin, text_hash)
            split = split_of(doc_id, config.validation_fraction)
            title = rec.title if rec.title is not None else rec.text.strip().split("\n", 1)[0][:200]
            for name, value in zip(CORPUS_SCHEMA.names, (doc_id, title, rec.text, source, split)):
                columns[name].append(value)
            report.documents[source] += 1
            report.splits[split] += 1
    if not columns["doc_id"]:
        raise CorpusError(f"sources {list(config.sources)}: no usable documents ({report.skip_counts()})")
    return pa.table(columns, schema=CORPUS_SCHEMA), report


def write_corpus(table: pa.Table, report: CorpusReport, out_dir: str | Path, num_shards: int, config: CorpusConfig) -> dict:
    """Write `shard-XXXX.parquet` (documents hashed to shards by doc_id), `skipped.jsonl`
    and the manifest, which is written last: a corpus with a manifest is complete."""
    out_dir = Path(out_dir)
    clean_stale_tmp(out_dir)
    shard = np.array([shard_of(d, num_shards) for d in table.column("doc_id").to_pylist()])
    shards = []
    for k in range(num_shards):
        part = table.take(np.flatnonzero(shard == k))
        sha = write_table(out_dir / shard_name(k), part)
        shards.append({"file": shard_name(k), "sha256": sha, "docs": part.num_rows})
    with atomic_path(out_dir / "skipped.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(s) + "\n" for s in report.skipped))
    manifest = {
        "fingerprint": fingerprint([s["sha256"] for s in shards]),
        "config": asdict(config),
        "num_shards": num_shards,
        "shards": shards,
        "documents": table.num_rows,
        "documents_per_source": dict(report.documents),
        "splits": dict(report.splits),
        "skipped": report.skip_counts(),
        "characters": int(pc.sum(pc.utf8_length(table.column("text"))).as_py()),
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def read_corpus_shard(corpus_dir: str | Path, shard: int, columns: list[str] | None = None) -> pa.Table:
    return read_table(Path(corpus_dir) / shard_name(shard), CORPUS_SCHEMA, columns)
