"""LMLM's LLM-judge annotations converted to per-token `<CALL>` labels (A.2.2).

LMLM's `annotated_text` places a lookup before each delegated value, which the text then
repeats: `born on [dblookup('Napoleon', 'Birth Date') -> August 15, 1769] August 15,
1769.` Each delegated *word* becomes `<CALL>` targets on the clean `text`'s tokens
("<CALL> <CALL><CALL>, <CALL><CALL><CALL><CALL>." for the digits-split tokenizer): a token
is a call when it covers a letter or digit of a delegated value; spaces and punctuation
stay normal targets.

The annotated and clean texts differ in whitespace, dropped lines and small edits, so the
two are aligned word by word (difflib over whitespace-separated words); a value whose
words cannot be found or aligned is counted as unplaced, never dropped silently.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import biographies as synthetic
from pipelines import judge
from pipelines.classes import FACT
from pipelines.corpus import LMLM_FILES, CorpusError, read_corpus_shard
from pipelines.doc_ids import doc_id_for
from pipelines.files import clean_stale_tmp, code_fingerprint, fingerprint, iter_jsonl, read_json, read_json_file, write_json
from pipelines.shards import JUDGE_SCHEMA, MANIFEST, TOKEN_SCHEMA, list_array, read_table, shard_name, write_table
from pipelines.tokenizer import Tokenizer

LOOKUP = re.compile(r"""\[dblookup\((['"])(.*?)\1,\s*(['"])(.*?)\3\)\s*->\s*(.*?)\]""", re.DOTALL)
_WORD = re.compile(r"\w+")
_NONSPACE = re.compile(r"\S+")
CONNECTORS = frozenset({"and", "or", "the", "of", "a", "an", "s"})
MAX_SKIPPED_WORDS = 6  # words between a lookup and its value ("the founder of the [..] Kupat Holim")


@dataclass(frozen=True)
class Lookup:
    entity: str
    relation: str
    value: str
    position: int  # where the lookup stood in the text with lookups removed


@dataclass
class ConversionReport:
    lookups: int = 0
    placed: int = 0
    unplaced: list[dict] = field(default_factory=list)  # {"doc_id", "value", "reason"}
    words_unaligned: int = 0

    def merge(self, other: ConversionReport) -> None:
        self.lookups += other.lookups
        self.placed += other.placed
        self.unplaced += other.unplaced
        self.words_unaligned += other.words_unaligned


def parse_annotated(annotated: str) -> tuple[str, list[Lookup]]:
    """Remove the lookups; return the plain text and each lookup with its position in it."""
    parts, lookups, pos, last = [], [], 0, 0
    for m in LOOKUP.finditer(annotated):
        parts.append(annotated[last : m.start()])
        pos += m.start() - last
        lookups.append(Lookup(m.group(2), m.group(4), m.group(5).strip(), pos))
        last = m.end()
    parts.append(annotated[last:])
    return "".join(parts), lookups


def value_spans(plain: str, lookup: Lookup) -> list[tuple[int, int]]:
    """Character spans of the value's words where the text repeats it after the lookup
    (empty if it does not).

    Exact (case-insensitive) when the text repeats the value verbatim; otherwise the
    value's words in the run that follows, allowing connectors between them ("A, B"
    written "A and B": the connector is not delegated) and at most MAX_SKIPPED_WORDS other
    words before the first."""
    start = len(plain) - len(plain[lookup.position :].lstrip())
    if lookup.value and plain[start : start + len(lookup.value)].lower() == lookup.value.lower():
        return [(start, start + len(lookup.value))]
    remaining = Counter(w.lower() for w in _WORD.findall(lookup.value))
    spans: list[tuple[int, int]] = []
    skipped = 0
    for m in _WORD.finditer(plain, lookup.position, min(len(plain), lookup.position + 4 * len(lookup.value) + 80)):
        w = m.group().lower()
        if remaining[w] > 0:
            remaining[w] -= 1
            spans.append(m.span())
            if not +remaining:
                break
        elif not spans and skipped < MAX_SKIPPED_WORDS:
            skipped += 1
        elif not (spans and w in CONNECTORS):
            break
    return spans


def _word_map(plain: str, clean: str) -> tuple[list[re.Match], list[re.Match], dict[int, int]]:
    """Whitespace-separated words of both texts and a map plain word -> clean word."""
    pw, cw = list(_NONSPACE.finditer(plain)), list(_NONSPACE.finditer(clean))
    matcher = difflib.SequenceMatcher(None, [m.group() for m in pw], [m.group() for m in cw], autojunk=False)
    mapping = {}
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            mapping.update(zip(range(i1, i2), range(j1, j2)))
    return pw, cw, mapping


def delegated_chars(annotated: str, clean: str, doc_id: str = "") -> tuple[np.ndarray, ConversionReport]:
    """A boolean mask over `clean`: the letters and digits of every delegated value."""
    plain, lookups = parse_annotated(annotated)
    report = ConversionReport(lookups=len(lookups))
    mask = np.zeros(len(clean), dtype=bool)
    if not lookups:
        return mask, report
    pw, cw, mapping = _word_map(plain, clean)
    starts = np.array([m.start() for m in pw])
    for lookup in lookups:
        spans = value_spans(plain, lookup)
        if not spans:
            report.unplaced.append({"doc_id": doc_id, "value": lookup.value, "reason": "value not found after lookup"})
            continue
        placed_any = False
        for span in spans:
            first = int(np.searchsorted(starts, span[0], side="right")) - 1
            for k in range(max(first, 0), len(pw)):
                word = pw[k]
                if word.start() >= span[1]:
                    break
                if k not in mapping:
                    report.words_unaligned += 1
                    continue
                target = cw[mapping[k]]
                if word.group() == target.group():  # same word: delegate the same characters
                    lo = max(span[0], word.start()) - word.start()
                    hi = min(span[1], word.end()) - word.start()
                    mask[target.start() + lo : target.start() + hi] = True
                else:  # edited word ("Van" / "Văn"): delegate all of it
                    mask[target.start() : target.end()] = True
                placed_any = True
        if placed_any:
            report.placed += 1
        else:
            report.unplaced.append({"doc_id": doc_id, "value": lookup.value, "reason": "value's words not in the clean text"})
    alnum = np.fromiter((c.isalnum() for c in clean), dtype=bool, count=len(clean))
    return mask & alnum, report


def judge_calls(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Per token: 1 if it covers a delegated character. Zero-width byte pieces take the
    character at their start, like the fact labels."""
    if len(starts) == 0:
        return np.zeros(0, dtype=np.int8)
    padded = np.append(mask, False)
    return np.maximum.reduceat(padded.astype(np.int8), starts.astype(np.intp))


# ---------------------------------------------------------------- annotations


def read_annotations(source: str) -> dict[str, tuple[str, str]]:
    """doc key (hash of the clean text) -> (annotated_text, annotator). `embedded:dwiki`
    reads the shipped LMLM files (Llama annotator first, GPT-4o for the rest);
    `embedded:synthetic-bios[?params]` the knowledge base's values (pipelines.biographies); a
    path reads LMLM-format JSON (`{"examples": [...]}`) or JSONL with `text`/`annotated_text`."""
    if synthetic.is_synthetic(source):
        files = [(source, synthetic.annotations(source))]
    else:
        files = [(path, _examples(Path(path))) for path in (LMLM_FILES if source == "embedded:dwiki" else (source,))]
    out: dict[str, tuple[str, str]] = {}
    for path, examples in files:
        for i, ex in enumerate(examples):
            for key in ("text", "annotated_text"):
                if not isinstance(ex.get(key), str):
                    raise CorpusError(f"{path}:example {i}: missing string field {key!r}")
            out.setdefault(doc_id_for(ex["text"]), (ex["annotated_text"], ex.get("prompt_id") or ex.get("model_id") or "unknown"))
    return out


def _examples(path: Path) -> Iterator[dict]:
    if ".jsonl" in path.name:
        yield from (row for _, row in iter_jsonl(path))
    else:
        yield from read_json_file(path)["examples"]


# ---------------------------------------------------------------- the stage


def judge_shard(corpus_dir: Path, tokens_dir: Path, shard: int, tok: Tokenizer, annotations: dict, out_dir: Path) -> dict:
    corpus = read_corpus_shard(corpus_dir, shard, ["doc_id", "text"])
    tokens = read_table(tokens_dir / shard_name(shard), TOKEN_SCHEMA, ["doc_id", "input_ids", "token_class"])
    if corpus.column("doc_id").to_pylist() != tokens.column("doc_id").to_pylist():
        raise ValueError(f"{tokens_dir / shard_name(shard)}: documents differ from corpus shard {shard}")
    report = ConversionReport()
    calls, agree = [], Counter()
    annotators = Counter()
    for row, (doc_id, text) in enumerate(zip(corpus.column("doc_id").to_pylist(), corpus.column("text").to_pylist())):
        entry = annotations.get(doc_id_for(text))
        if entry is None:
            calls.append(None)
            continue
        annotated, annotator = entry
        annotators[annotator] += 1
        mask, doc_report = delegated_chars(annotated, text, doc_id)
        report.merge(doc_report)
        ids, starts, ends = tok.encode_with_offsets(text)
        expected = tokens.column("input_ids")[row].values.to_numpy()
        if not np.array_equal(ids, expected):
            raise ValueError(f"{tokens_dir / shard_name(shard)}: doc {doc_id} tokenizes differently now; rematerialize token_shards")
        call = judge_calls(mask, starts, ends)
        fact = tokens.column("token_class")[row].values.to_numpy() == FACT
        agree.update({"both": int((call.astype(bool) & fact).sum()), "judge": int(call.sum()),
                      "fact": int(fact.sum()), "tokens": len(call)})
        calls.append(call)
    column = list_array([c if c is not None else np.zeros(0, np.int8) for c in calls], pa.int8())
    validity = pa.array([c is not None for c in calls])
    column = pa.ListArray.from_arrays(column.offsets, column.values, mask=pc.invert(validity))
    stats = {
        "file": shard_name(shard),
        "docs": corpus.num_rows,
        "annotated_docs": sum(c is not None for c in calls),
        "annotators": dict(annotators),
        "lookups": report.lookups,
        "placed": report.placed,
        "unplaced": len(report.unplaced),
        "words_unaligned": report.words_unaligned,
        "agreement": dict(agree),
    }
    stats["sha256"] = write_table(out_dir / shard_name(shard), pa.table([corpus.column("doc_id"), column], schema=JUDGE_SCHEMA), stats)
    stats["unplaced_examples"] = report.unplaced[:20]
    return stats


def build_judge_labels(corpus_dir: str | Path, tokens_dir: str | Path, out_dir: str | Path, source: str = "embedded:dwiki", log=print) -> dict:
    corpus_dir, tokens_dir, out_dir = Path(corpus_dir), Path(tokens_dir), Path(out_dir)
    clean_stale_tmp(out_dir)
    token_manifest = read_json(tokens_dir / MANIFEST)
    tok = Tokenizer(tokens_dir)
    annotations = read_annotations(source)
    shards = []
    for entry in token_manifest["shards"]:
        k = int(entry["file"][len("shard-") : -len(".parquet")])
        shards.append(judge_shard(corpus_dir, tokens_dir, k, tok, annotations, out_dir))
        log(f"judge shard {k}: {shards[-1]['annotated_docs']}/{shards[-1]['docs']} annotated, {shards[-1]['unplaced']} unplaced values")
    agree = Counter()
    for s in shards:
        agree.update(s["agreement"])
    manifest = {
        "fingerprint": fingerprint(token_manifest["fingerprint"], source, code_fingerprint(judge)),
        "token_shards_fingerprint": token_manifest["fingerprint"],
        "source": source,
        "shards": [{k: v for k, v in s.items() if k != "unplaced_examples"} for s in shards],
        "docs": sum(s["docs"] for s in shards),
        "annotated_docs": sum(s["annotated_docs"] for s in shards),
        "lookups": sum(s["lookups"] for s in shards),
        "placed": sum(s["placed"] for s in shards),
        "unplaced": sum(s["unplaced"] for s in shards),
        "words_unaligned": sum(s["words_unaligned"] for s in shards),
        "unplaced_examples": [u for s in shards for u in s["unplaced_examples"]][:50],
        "judge_call_fraction": agree["judge"] / max(agree["tokens"], 1),
        "agreement_with_spacy_facts": agreement(agree),
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def agreement(counts: Counter) -> dict:
    """Token-level agreement of judge calls with spaCy fact labels."""
    both, judge, fact, n = counts["both"], counts["judge"], counts["fact"], counts["tokens"]
    neither = n - judge - fact + both
    return {
        "tokens": n,
        "judge_calls": judge,
        "spacy_facts": fact,
        "judge_calls_that_are_facts": both / max(judge, 1),  # precision of judge vs spaCy
        "facts_that_are_judge_calls": both / max(fact, 1),  # recall
        "jaccard": both / max(judge + fact - both, 1),
        "token_agreement": (both + neither) / max(n, 1),
    }
