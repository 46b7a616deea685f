"""The corpus: documents with a stable `doc_id`, `title`, `text`, `source` and a
deterministic 90/10 `split`, read from the embedded sample, local files or a Hugging Face
dataset. Bad records fail with the file and record named, or are skipped and counted."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from spacy.lang.en.stop_words import STOP_WORDS

from pipelines import biographies
from pipelines.doc_ids import doc_id_for, shard_of, split_of
from pipelines.files import (
    RecordError,
    atomic_path,
    clean_stale_tmp,
    file_sha256,
    fingerprint,
    iter_jsonl,
    one_line,
    read_json_file,
    write_json,
)
from pipelines.shards import MANIFEST, PARQUET_ERRORS, parquet_file, read_table, shard_name, table_writer

EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "data" / "embedded"
LMLM_FILES = (  # the 830 Llama-annotated articles first, then the GPT-4o ones (71 repeat)
    EMBEDDED_DIR / "lmlm" / "dwiki-eval1k_annotator_llama-v6.1_cleaned.json.xz",
    EMBEDDED_DIR / "lmlm" / "dwiki-eval100_chatgpt_gpt4o-v7.1_cleaned.json.xz",
)
LEADS_FILE = EMBEDDED_DIR / "wikipedia" / "ovos_vital_articles_summaries_en-us.json.xz"

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
    skips: Counter = field(default_factory=Counter)  # per reason
    skipped: list[dict] = field(default_factory=list)  # {"origin", "reason"}; `write_corpus` drains it to skipped.jsonl

    def skip(self, origin: str, reason: str) -> None:
        self.skips[reason] += 1
        self.skipped.append({"origin": origin, "reason": reason})

    def skip_counts(self) -> dict[str, int]:
        return dict(self.skips)


def english_stopword_fraction(text: str) -> tuple[float, int]:
    words = _WORD.findall(text[:20_000])
    if not words:
        return 0.0, 0
    return sum(w.lower() in STOP_WORDS for w in words) / len(words), len(words)


# ---------------------------------------------------------------- readers


def read_source(source: str) -> Iterator[Record]:
    """`embedded:dwiki`, `embedded:wikipedia-leads`, `embedded:synthetic-bios[?params]` and
    `embedded:synthetic-bios-extra[?params]` (pipelines.biographies), a .jsonl[.gz|.xz]/.parquet file or a
    directory of them, or `hf:<dataset id or local dir>[@split]`."""
    if source == "embedded:dwiki":
        yield from _read_lmlm(LMLM_FILES)
    elif source == "embedded:wikipedia-leads":
        yield from _read_leads(LEADS_FILE)
    elif source.split("?", 1)[0] in (biographies.SOURCE, biographies.EXTRA_SOURCE):
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
        yield from _read_rows(_parquet_rows(path), str(path), "row")
    elif path.name.endswith((".jsonl", ".jsonl.gz", ".jsonl.xz")):
        yield from _read_jsonl(path)
    else:
        raise CorpusError(f"{path}: unsupported format (use .jsonl, .jsonl.gz, .jsonl.xz or .parquet)")


def _read_jsonl(path: Path) -> Iterator[Record]:
    for lineno, row in iter_jsonl(path):
        yield _record(row, f"{path}:line {lineno}")


def _parquet_rows(path: Path) -> Iterator[dict]:
    """The rows of a Parquet file, a batch of a row group at a time (not the file); a corrupt
    row group fails naming it."""
    with parquet_file(path) as file:
        for k in range(file.num_row_groups):
            try:
                for batch in file.iter_batches(batch_size=1024, row_groups=[k]):
                    yield from batch.to_pylist()
            except PARQUET_ERRORS as e:
                raise CorpusError(f"{path}:row group {k}: corrupt Parquet data ({one_line(e)})") from e


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
        ds = datasets.load_dataset(name, split=split or "train", streaming=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the source named
        raise CorpusError(f"hf:{spec}: could not load the dataset ({type(e).__name__}: {e})") from e
    yield from _read_rows(ds, f"hf:{spec}", "row")


def _read_synthetic(source: str) -> Iterator[Record]:
    for doc in biographies.iter_documents(source):
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

SPILL_SCHEMA = CORPUS_SCHEMA.append(pa.field("origin", pa.string())).append(pa.field("text_hash", pa.string()))
SPILL_BYTES = 64 << 20  # characters of text buffered before a row group is written


def iter_documents(config: CorpusConfig, report: CorpusReport) -> Iterator[dict]:
    """The records of every source in reading order, as rows of `SPILL_SCHEMA`, without the
    empty and non-English ones (counted in the report); duplicates are still there (`dedupe`)."""
    for source in config.sources:
        for rec in read_source(source):
            if not rec.text.strip():
                report.skip(rec.origin, "empty")
                continue
            frac, n_words = english_stopword_fraction(rec.text)
            if n_words >= 12 and frac < config.min_stopword_fraction:
                report.skip(rec.origin, "non_english")
                continue
            text_hash = doc_id_for(rec.text)
            doc_id = rec.doc_id or text_hash
            title = rec.title if rec.title is not None else rec.text.strip().split("\n", 1)[0][:200]
            split = split_of(doc_id, config.validation_fraction)
            yield dict(doc_id=doc_id, title=title, text=rec.text, source=source, split=split, origin=rec.origin, text_hash=text_hash)


def dedupe(rows: Iterable[dict], report: CorpusReport) -> Iterator[dict]:
    """The first row of each doc_id (later ones with the same text are counted skips; with
    another text, an error naming both records). Rows of one doc_id always hash to the same
    shard, so deduplicating shard by shard is deduplicating the corpus."""
    first: dict[str, tuple[str, str]] = {}  # doc_id -> (origin, text hash)
    for row in rows:
        doc_id = row["doc_id"]
        if doc_id in first:
            first_origin, first_hash = first[doc_id]
            if first_hash != row["text_hash"]:
                raise CorpusError(f"{row['origin']}: doc_id {doc_id!r} already used by {first_origin} for a different text")
            report.skip(row["origin"], "duplicate")
            continue
        first[doc_id] = (row["origin"], row["text_hash"])
        report.documents[row["source"]] += 1
        report.splits[row["split"]] += 1
        yield row


def build_corpus(config: CorpusConfig) -> tuple[pa.Table, CorpusReport]:
    """The whole corpus in memory (tests, benchmarks, small corpora; `write_corpus` streams)."""
    report = CorpusReport()
    table = pa.Table.from_pylist(list(dedupe(iter_documents(config, report), report)), schema=CORPUS_SCHEMA)
    if not table.num_rows:
        raise CorpusError(f"sources {list(config.sources)}: no usable documents ({report.skip_counts()})")
    return table, report


class _RowBuffer:
    """Rows waiting to be written as one row group of `writer`."""

    def __init__(self, writer: pq.ParquetWriter, schema: pa.Schema):
        self.writer, self.schema, self.rows, self.text_chars = writer, schema, [], 0

    def append(self, row: dict) -> None:
        self.rows.append(row)
        self.text_chars += len(row["text"])

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows, self.text_chars = [], 0


def write_corpus(config: CorpusConfig, out_dir: str | Path, num_shards: int, log: Callable[[str], None] = lambda _m: None) -> dict:
    """Stream the sources into `shard-XXXX.parquet` (documents hashed to shards by doc_id, in
    reading order), `skipped.jsonl` and the manifest, written last: a corpus with a manifest
    is complete. The records are first spilled to temporary per-shard files, then each shard
    is deduplicated and written, both in row groups of `SPILL_BYTES` of text, so peak memory
    is that buffer and one shard's doc_ids, whatever the corpus' size (bench/corpus_memory.py).
    A shard under `SPILL_BYTES` is one row group, as `write_table` writes it. skipped.jsonl
    lists the empty and non-English records in reading order, then the duplicates shard by shard."""
    out_dir = Path(out_dir)
    clean_stale_tmp(out_dir)
    report = CorpusReport()
    spill_dir = out_dir / ".tmp-spill"
    shutil.rmtree(spill_dir, ignore_errors=True)
    with atomic_path(out_dir / "skipped.jsonl") as skipped_tmp, skipped_tmp.open("w") as skipped:

        def drain() -> None:
            skipped.writelines(json.dumps(s) + "\n" for s in report.skipped)
            report.skipped.clear()

        try:
            _spill(iter_documents(config, report), spill_dir, num_shards, drain, log)
            shards = [_write_shard(dedupe(_read_spill(spill_dir, k), report), out_dir / shard_name(k)) for k in range(num_shards)]
            drain()
        finally:
            shutil.rmtree(spill_dir, ignore_errors=True)
    documents = sum(s["docs"] for s in shards)
    if not documents:
        raise CorpusError(f"sources {list(config.sources)}: no usable documents ({report.skip_counts()})")
    manifest = {
        "fingerprint": fingerprint([s["sha256"] for s in shards]),
        "config": asdict(config),
        "num_shards": num_shards,
        "shards": [{k: s[k] for k in ("file", "sha256", "docs")} for s in shards],
        "documents": documents,
        "documents_per_source": dict(report.documents),
        "splits": dict(report.splits),
        "skipped": report.skip_counts(),
        "characters": sum(s["characters"] for s in shards),
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def _spill(rows: Iterable[dict], spill_dir: Path, num_shards: int, drain: Callable[[], None], log: Callable[[str], None]) -> None:
    """Append the rows to one temporary Parquet file per shard, all buffers flushed whenever
    `SPILL_BYTES` of text are buffered."""
    spill_dir.mkdir(parents=True)
    with contextlib.ExitStack() as stack:
        buffers = [_RowBuffer(stack.enter_context(pq.ParquetWriter(spill_dir / shard_name(k), SPILL_SCHEMA)), SPILL_SCHEMA)
                   for k in range(num_shards)]
        buffered = records = 0
        for row in rows:
            buffers[shard_of(row["doc_id"], num_shards)].append(row)
            buffered, records = buffered + len(row["text"]), records + 1
            if buffered >= SPILL_BYTES:
                for b in buffers:
                    b.flush()
                drain()
                buffered = 0
                log(f"read {records:,} documents")
        for b in buffers:
            b.flush()


def _read_spill(spill_dir: Path, shard: int) -> Iterator[dict]:
    for batch in pq.ParquetFile(spill_dir / shard_name(shard)).iter_batches(batch_size=1024):
        yield from batch.to_pylist()


def _write_shard(rows: Iterable[dict], path: Path) -> dict:
    docs = characters = 0
    with table_writer(path, CORPUS_SCHEMA) as writer:
        buffer = _RowBuffer(writer, CORPUS_SCHEMA)
        for row in rows:
            buffer.append(row)  # from_pylist takes the schema's columns
            docs, characters = docs + 1, characters + len(row["text"])
            if buffer.text_chars >= SPILL_BYTES:
                buffer.flush()
        buffer.flush()
    return {"file": path.name, "sha256": file_sha256(path), "docs": docs, "characters": characters}


def read_corpus_shard(corpus_dir: str | Path, shard: int, columns: list[str] | None = None) -> pa.Table:
    return read_table(Path(corpus_dir) / shard_name(shard), CORPUS_SCHEMA, columns)
