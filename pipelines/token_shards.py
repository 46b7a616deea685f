"""The `token_shards` stage: tokenize each labelled document and give every token the
class of its word (A.2.1). A dataset directory holds `shard-XXXX.parquet`, a copy of
`tokenizer.model`, and `manifest.json` with counts and a fingerprint."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines import align, token_shards
from pipelines.align import token_classes
from pipelines.classes import CLASS_NAMES, FACT, UNLABELED
from pipelines.corpus import read_corpus_shard
from pipelines.facts import WordLabels
from pipelines.files import atomic_path, clean_stale_tmp, code_fingerprint, file_sha256, fingerprint, read_json, write_json
from pipelines.shards import (
    MANIFEST,
    TOKEN_SCHEMA,
    WORD_LABEL_SCHEMA,
    ShardError,
    check_equal_lengths,
    file_metadata,
    list_array,
    read_table,
    shard_name,
    write_table,
)
from pipelines.tokenizer import MODEL_FILE, Tokenizer

Log = Callable[[str], None]
LENGTH_EDGES = (150, 400, 800)  # document-length buckets (tokens) of the fact fraction


def length_bucket(tokens: int) -> str:
    """The length bucket of a document of `tokens` tokens: "<150", "150-399", "400-799", ">=800"."""
    lower = 0
    for edge in LENGTH_EDGES:
        if tokens < edge:
            return f"<{edge}" if lower == 0 else f"{lower}-{edge - 1}"
        lower = edge
    return f">={lower}"


LENGTH_BUCKETS = [length_bucket(e - 1) for e in LENGTH_EDGES] + [length_bucket(LENGTH_EDGES[-1])]


def fact_fraction_by_length(shards: list[dict]) -> dict[str, dict]:
    """Documents, tokens and the fact fraction per length bucket, summed over shards' stats."""
    out = {}
    for b in LENGTH_BUCKETS:
        docs, tokens, facts = (sum(s["by_length"].get(b, (0, 0, 0))[i] for s in shards) for i in range(3))
        if docs:
            out[b] = {"docs": docs, "tokens": tokens, "fact_fraction": facts / tokens}
    return out


def _word_labels(table: pa.Table, row: int) -> WordLabels:
    get = lambda c: table.column(c)[row].values.to_numpy()  # noqa: E731
    return WordLabels(get("word_start"), get("word_end"), get("word_class"), get("word_rule"))


def _labels_for(corpus: pa.Table, labels_dir: Path, shard: int) -> pa.Table:
    labels_path = labels_dir / shard_name(shard)
    labels = read_table(labels_path, WORD_LABEL_SCHEMA)
    if corpus.column("doc_id").to_pylist() != labels.column("doc_id").to_pylist():
        raise ShardError(f"{labels_path}: documents differ from corpus shard {shard}; rematerialize spacy_word_labels")
    check_equal_lengths(labels_path, labels, ["word_start", "word_end", "word_class", "word_rule"])
    return labels


def shard_inputs(corpus_dir: Path, labels_dir: Path | None, tok: Tokenizer) -> Callable[[int], dict]:
    """What each token shard is made from, by shard (a shard that recorded other inputs is
    stale); what all shards share is read once."""
    corpus_shards = read_json(corpus_dir / MANIFEST)["shards"]
    shared = {"tokenizer_sha256": file_sha256(tok.path), "code_fingerprint": code_fingerprint(align, token_shards)}

    def inputs(shard: int) -> dict:
        labels = labels_dir / shard_name(shard) if labels_dir is not None else None
        return {
            **shared,
            "corpus_shard_sha256": corpus_shards[shard]["sha256"],
            "labels_fingerprint": file_metadata(labels)["fingerprint"] if labels is not None and labels.exists() else None,
        }

    return inputs


def tokenize_shard(corpus_dir: Path, shard: int, tok: Tokenizer, out_dir: Path, labels_dir: Path | None, inputs: dict) -> dict:
    """Tokenize one corpus shard; with `labels_dir`, each token gets its word's class,
    without, every token is UNLABELED (data that only trains the baseline objective)."""
    corpus = read_corpus_shard(corpus_dir, shard, ["doc_id", "text", "split"])
    labels = _labels_for(corpus, labels_dir, shard) if labels_dir is not None else None
    ids_list, cls_list = [], []
    for row, text in enumerate(corpus.column("text").to_pylist()):
        ids, starts, ends = tok.encode_with_offsets(text)
        ids_list.append(ids)
        if labels is None:
            cls_list.append(np.full(len(ids), UNLABELED, dtype=np.int8))
        else:
            cls_list.append(token_classes(len(text), _word_labels(labels, row), starts, ends))
    table = pa.table(
        [corpus.column("doc_id"), corpus.column("split"), list_array(ids_list, pa.int32()), list_array(cls_list, pa.int8())],
        schema=TOKEN_SCHEMA,
    )
    splits = np.array(corpus.column("split").to_pylist())
    lengths = np.array([len(a) for a in ids_list])
    cls = np.concatenate(cls_list) if cls_list else np.zeros(0, np.int8)
    stats = {
        "file": shard_name(shard),
        "docs": table.num_rows,
        "tokens": int(lengths.sum()),
        "tokens_per_split": {s: int(lengths[splits == s].sum()) for s in ("train", "validation")},
        "classes": {name: int((cls == c).sum()) for c, name in enumerate(CLASS_NAMES)},
        "inputs": inputs,
        "by_length": {},  # bucket -> [docs, tokens, fact tokens]
    }
    for n, c in zip(lengths.tolist(), cls_list):
        counts = stats["by_length"].setdefault(length_bucket(n), [0, 0, 0])
        counts[0], counts[1], counts[2] = counts[0] + 1, counts[1] + n, counts[2] + int((c == FACT).sum())
    stats["sha256"] = write_table(out_dir / shard_name(shard), table, stats)
    return stats


def tokenize_shards(
    corpus_dir: str | Path, labels_dir: str | Path | None, tokenizer_path: str | Path, out_dir: str | Path, shards: list[int],
    log: Log = print,
) -> list[dict]:
    """Token shards `shards` of the corpus (one partition run of `token_shards` writes its
    shards; runs of other shards may write the same directory at the same time)."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    labels_dir = Path(labels_dir) if labels_dir is not None else None
    clean_stale_tmp(out_dir, [shard_name(k) for k in shards])
    tok = Tokenizer(tokenizer_path)
    inputs = shard_inputs(corpus_dir, labels_dir, tok)
    stats = []
    for k in shards:
        stats.append(tokenize_shard(corpus_dir, k, tok, out_dir, labels_dir, inputs(k)))
        log(f"token shard {k}: {stats[-1]['docs']} documents, {stats[-1]['tokens']} tokens")
    return stats


def write_manifest(corpus_dir: str | Path, labels_dir: str | Path | None, tokenizer_path: str | Path, out_dir: str | Path) -> dict | list[int]:
    """The manifest of a dataset whose every shard is there and current (made from the
    corpus, labels, tokenizer and code of now), written with a copy of the tokenizer; else
    the shards still missing or stale, and nothing written. Two runs that finish their last
    shards at once both see every shard, and write the same manifest."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    labels_dir = Path(labels_dir) if labels_dir is not None else None
    corpus_manifest = read_json(corpus_dir / MANIFEST)
    tok = Tokenizer(tokenizer_path)
    inputs = shard_inputs(corpus_dir, labels_dir, tok)
    shards, waiting = [], []
    for k in range(corpus_manifest["num_shards"]):
        path = out_dir / shard_name(k)
        stats = file_metadata(path) if path.exists() else {}
        if not stats or stats.get("inputs") != inputs(k):
            waiting.append(k)
            continue
        shards.append({**stats, "sha256": file_sha256(path)})
    if waiting:
        return waiting
    with atomic_path(out_dir / MODEL_FILE) as tmp:
        shutil.copyfile(tok.path, tmp)
    shared = shards[0]["inputs"]  # every shard is current: they all record the tokenizer and code of now
    total = lambda key: sum(s[key] for s in shards)  # noqa: E731
    classes = {name: sum(s["classes"][name] for s in shards) for name in CLASS_NAMES}
    tokens = total("tokens")
    manifest = {
        "fingerprint": fingerprint(
            shared["tokenizer_sha256"],
            corpus_manifest["fingerprint"],
            [s["inputs"]["labels_fingerprint"] for s in shards],
            shared["code_fingerprint"],
        ),
        "corpus_fingerprint": corpus_manifest["fingerprint"],
        "labeled": labels_dir is not None,
        "tokenizer": {"file": MODEL_FILE, "sha256": shared["tokenizer_sha256"], "vocab_size": tok.vocab_size,
                      "call_token_id": tok.call_id, "eos_id": tok.eos_id},
        "shards": shards,
        "docs": total("docs"),
        "tokens": tokens,
        "tokens_per_split": {s: sum(x["tokens_per_split"][s] for x in shards) for s in ("train", "validation")},
        "classes": classes,
        "fact_fraction": classes["fact"] / max(tokens, 1) if labels_dir is not None else None,
        "fact_fraction_by_length": fact_fraction_by_length(shards) if labels_dir is not None else None,
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def build_token_shards(
    corpus_dir: str | Path, labels_dir: str | Path | None, tokenizer_path: str | Path, out_dir: str | Path, log: Log = print
) -> dict:
    """Token shards of every corpus shard, labelled from `labels_dir` (None: unlabeled), and the manifest."""
    shards = list(range(read_json(Path(corpus_dir) / MANIFEST)["num_shards"]))
    tokenize_shards(corpus_dir, labels_dir, tokenizer_path, out_dir, shards, log)
    manifest = write_manifest(corpus_dir, labels_dir, tokenizer_path, out_dir)
    if isinstance(manifest, list):
        raise ShardError(f"{out_dir}: shards {manifest} changed while they were written (another run?)")
    return manifest


def verify_shard(path: str | Path, tok: Tokenizer, corpus_dir: str | Path | None = None, shard: int | None = None) -> dict:
    """Asset-check helper: ids and classes have equal lengths, every id is in the
    vocabulary (and never <CALL>), classes are valid, and, given the corpus, the tokens
    decode back to exactly the document text (every character covered)."""
    table = read_table(path, TOKEN_SCHEMA)
    check_equal_lengths(path, table, ["input_ids", "token_class"])
    ids = table.column("input_ids").combine_chunks().values.to_numpy()
    cls = table.column("token_class").combine_chunks().values.to_numpy()
    if len(ids) and (ids.min() < 0 or ids.max() >= tok.call_id):
        raise ShardError(f"{path}: token ids outside [0, {tok.call_id}) (the text vocabulary)")
    if len(cls) and (cls.min() < UNLABELED or cls.max() > FACT):
        raise ShardError(f"{path}: token classes outside {UNLABELED}..{FACT}")
    uncovered = 0
    if corpus_dir is not None:
        texts = read_corpus_shard(corpus_dir, shard, ["text"]).column("text").to_pylist()
        for text, row in zip(texts, table.column("input_ids").to_pylist()):
            uncovered += tok.sp.decode(row) != text
    return {"rows": table.num_rows, "tokens": len(ids), "docs_not_round_tripping": uncovered}
