"""Training data: token datasets packed into fixed-length sequences with per-target labels.

`load_documents` reads one or more token dataset directories (`pipelines.token_shards`),
keeps one split, and attaches, per token, the LLM-judge labels (`pipelines.judge`) and the
reference model's losses (`trainer.score`) when the method needs them. It checks, naming
the file and the record: the shards against their manifest (sha256), equal list lengths per
document, the same documents in the same order in every label shard, label manifests made
from these token shards (`token_shards_fingerprint`), one tokenizer for all datasets, and
fact labels present when the method needs them (an unlabeled dataset has token_class -1).

The split lies on disk, not in each process's memory. The first `load_documents` of a split
and its inputs builds a cache, `<cache_dir>/<split>-<key>/` (default cache_dir: `cache/` in
the first dataset's folder): one flat `.npy` per array (`ids`, `token_class`, `offsets`, and
`judge_call`, `ref_loss` when the method reads them) and `meta.json` (per-dataset counts, the
code and the shards it was made from), written shard by shard, under a file lock (the ranks
of a run build it once, the others wait) in a temporary folder renamed into place when
complete (a killed build leaves nothing that looks finished). The key hashes the shards' and
labels' sha256s and this module's code, so other inputs or code get another cache. Every
process maps the arrays read-only, under the lock, after checking their sizes against each
other and against the manifests' `tokens_per_split`: what it holds in memory grows with the
documents (an epoch's order), not with the tokens, and the pages it reads are page cache,
shared by the processes of a machine. Then it deletes the caches beside it that no load can
read again (made by other code, or from shards their folders no longer hold), each under its
lock; a mapped file outlives its deletion, so a run using one keeps it.

`PackedLoader` packs the documents of an epoch, in a shuffled order, into one stream with
EOS before every document (`EOS d1 EOS d2 ...`), cut into sequences of `seq_len` inputs and
`seq_len` targets (the inputs shifted by one). Labels are aligned to the *targets*: the
labels of position i belong to the token the model predicts there. An EOS target has class
grammatical (so never a fact, never `other`), judge label 0, reference loss NaN, and the
label `eos` (no mask rule calls or ignores it, `trainer.masks`). A document's first token is predicted after that EOS, as in
`trainer.score`. The stream is a pure function of (seed, position): micro-batch k of step s
is read directly, without state, so resuming is exact and processes split the work by
index. Global micro-batch k of a step goes to rank k // accumulation, so any number of
processes (with gradient accumulation making up the rest) sees the same micro-batches.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pipelines.classes import FACT, GRAMMATICAL, OTHER, UNLABELED
from pipelines.files import atomic_path, code_fingerprint, fingerprint, portable_path, read_json, write_json
from pipelines.shards import (
    JUDGE_SCHEMA,
    MANIFEST,
    TOKEN_SCHEMA,
    ShardError,
    check_equal_lengths,
    read_manifest,
    read_table,
)
from pipelines.tokenizer import MODEL_FILE
from trainer.masks import Needs, TokenLabels

EOS_CLASS = GRAMMATICAL
REF_LOSS_SCHEMA = pa.schema([("doc_id", pa.string()), ("ref_loss", pa.list_(pa.float32()))])
CACHE = "cache"  # the default cache_dir, in the first dataset's folder: a folder of flat arrays per split and inputs
CACHE_META = "meta.json"
LOADER_CODE = code_fingerprint(sys.modules[__name__])  # this module's, once: in each cache's key and meta.json


class DataError(ValueError):
    """Training data that does not fit together (labels of other shards, missing labels)."""


@dataclass
class Documents:
    """The documents of one split, concatenated: document i is `[offsets[i], offsets[i + 1])`
    of each flat array (read-only memory maps of the split's cache from `load_documents`)."""

    ids: np.ndarray  # uint16 (vocabularies up to 65,536) or int32
    token_class: np.ndarray  # int8; UNLABELED for datasets without labels
    offsets: np.ndarray  # int64, len = docs + 1
    judge_call: np.ndarray | None  # int8, 0 for documents without annotation
    ref_loss: np.ndarray | None  # float32
    tokenizer: dict  # vocab_size, call_token_id, eos_id, sha256, path
    sources: list[dict] = field(default_factory=list)  # per dataset: path, fingerprints, docs, tokens

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def fingerprint(self) -> str:
        """Of the contents (token shards and labels), not of where they lie."""
        return fingerprint([(s["fingerprint"], s.get("judge", {}).get("fingerprint"), s.get("ref_losses", {}).get("fingerprint"))
                            for s in self.sources])

    def recorded_sources(self, root: str | Path | None) -> list[dict]:
        """`sources` as a checkpoint records them: paths relative to the storage `root` (when
        under it), so that a checkpoint's provenance survives moving the storage."""
        portable = lambda s: {**s, "path": portable_path(s["path"], root)}  # noqa: E731
        return [{**portable(s), **{k: portable(s[k]) for k in ("judge", "ref_losses") if k in s}} for s in self.sources]


def _flat(column: pa.ChunkedArray, dtype) -> np.ndarray:
    return column.combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _aligned(
    label_path: Path, labels: pa.Table, column: str, tokens: pa.Table, token_path: Path, dtype, fill
) -> tuple[np.ndarray, int]:
    """A label column as one flat array aligned to the token shard's `input_ids` (`fill`
    for null rows); returns it and the number of null rows."""
    ours, theirs = labels.column("doc_id").to_pylist(), tokens.column("doc_id").to_pylist()
    if ours != theirs:
        row = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
        raise ShardError(
            f"{label_path}: documents differ from {token_path} (row {row}: "
            f"{ours[row] if row < len(ours) else 'missing'} vs {theirs[row] if row < len(theirs) else 'missing'}); rematerialize"
        )
    n_ids = pc.list_value_length(tokens.column("input_ids")).to_numpy(zero_copy_only=False)
    col = labels.column(column).combine_chunks()
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    n_lab = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(valid & (n_lab != n_ids))
    if len(bad):
        r = int(bad[0])
        raise ShardError(
            f"{label_path}: row {r} (doc_id {ours[r]}): {column} has {n_lab[r]} entries, "
            f"input_ids in {token_path} has {n_ids[r]}"
        )
    out = np.full(int(n_ids.sum()), fill, dtype=dtype)
    out[np.repeat(valid, n_ids)] = col.flatten().to_numpy(zero_copy_only=False)  # a valid row has one label per token
    return out, int((~valid).sum())


def _match_labels(label_dirs: list[Path], datasets: list[tuple[Path, dict]], kind: str) -> dict[Path, tuple[Path, dict]]:
    """Pair each label directory with the dataset its manifest says it was made from."""
    by_fp = {m["fingerprint"]: d for d, m in datasets}
    pairs = {}
    for label_dir in label_dirs:
        manifest = read_manifest(label_dir)
        fp = manifest.get("token_shards_fingerprint")
        if fp not in by_fp:
            known = ", ".join(f"{d}/manifest.json: {f}" for f, d in by_fp.items())
            raise DataError(
                f"{label_dir}/manifest.json: {kind} made from token shards with fingerprint {fp}, which matches no "
                f"--data directory ({known}); rematerialize the {kind} from these token shards"
            )
        pairs[by_fp[fp]] = (label_dir, manifest)
    return pairs


@dataclass(frozen=True)
class _Input:
    """A token dataset and the label directories read with it (None: not needed), each with its manifest."""

    path: Path
    manifest: dict
    judge: tuple[Path, dict] | None
    ref: tuple[Path, dict] | None


def load_documents(
    data_dirs: list[str | Path],
    split: str = "train",
    *,
    judge_dirs: list[str | Path] = (),
    ref_loss_dirs: list[str | Path] = (),
    needs: Needs = Needs(),
    method: str = "",
    cache_dir: str | Path | None = None,
) -> Documents:
    """The documents of `split`, with the labels `needs` asks for (`method` names who asks, in
    errors), as read-only memory maps of the split's cache in `cache_dir` (built first when
    missing; default: `cache/` in the first dataset's folder)."""
    if not data_dirs:
        raise DataError("no token dataset given (--data DIR)")
    datasets = [(Path(d), read_manifest(d)) for d in data_dirs]
    tokenizer = datasets[0][1]["tokenizer"]
    for d, m in datasets[1:]:
        if m["tokenizer"]["sha256"] != tokenizer["sha256"]:
            raise DataError(f"{d}/manifest.json: tokenizer differs from {datasets[0][0]}'s; all datasets must share one tokenizer")
    judges = _match_labels([Path(p) for p in judge_dirs], datasets, "judge labels")
    refs = _match_labels([Path(p) for p in ref_loss_dirs], datasets, "reference losses")
    inputs = []
    for d, manifest in datasets:
        for label_pairs, needed, what in ((judges, needs.judge, "LLM-judge labels (--judge)"), (refs, needs.ref_loss, "reference losses (--ref-losses)")):
            if needed and d not in label_pairs:
                raise DataError(f"{d}: method {method!r} needs {what} for every dataset; none given for this one")
        inputs.append(_Input(d, manifest, judges[d] if needs.judge else None, refs[d] if needs.ref_loss else None))
    tokens = sum(_split_tokens(i, split) for i in inputs)
    if not tokens:
        raise DataError(f"{', '.join(map(str, data_dirs))}: no {split} documents")
    # 2 bytes per id while the vocabulary fits (the paper's 32,001 does), 1 per class and judge label, 4 per reference loss.
    dtypes = {"ids": np.uint16 if tokenizer["vocab_size"] <= 1 << 16 else np.int32, "token_class": np.int8}
    dtypes |= {"judge_call": np.int8} if needs.judge else {}
    dtypes |= {"ref_loss": np.float32} if needs.ref_loss else {}
    cache = Path(cache_dir or Path(data_dirs[0]) / CACHE) / f"{split}-{_cache_key(inputs, split)}"
    with _exclusive(cache):
        if not cache.is_dir():
            _build_cache(cache, inputs, split, tokenizer, dtypes, tokens)
        arrays, meta = _open_cache(cache, dtypes, tokens)  # under the lock: `_prune` never deletes it unmapped
    _prune(cache.parent)
    sources = []
    for i, built in zip(inputs, meta["sources"]):
        if needs.facts and built["unlabeled"]:
            raise DataError(
                f"{i.path / built['unlabeled']['file']}: doc_id {built['unlabeled']['doc_id']} has no fact labels (token_class "
                f"{UNLABELED}, an unlabeled dataset); method {method!r} needs spaCy fact labels: train it on labeled token shards only"
            )
        source = {"path": str(i.path), "fingerprint": i.manifest["fingerprint"],
                  **{k: built[k] for k in ("docs", "tokens", "unannotated_docs")}}
        for name, pairs in (("judge", judges), ("ref_losses", refs)):
            if i.path in pairs:
                source[name] = {"path": str(pairs[i.path][0]), "fingerprint": pairs[i.path][1]["fingerprint"]}
        sources.append(source)
    return Documents(
        ids=arrays["ids"],
        token_class=arrays["token_class"],
        offsets=arrays["offsets"],
        judge_call=arrays.get("judge_call"),
        ref_loss=arrays.get("ref_loss"),
        tokenizer={**tokenizer, "path": str(datasets[0][0] / MODEL_FILE)},
        sources=sources,
    )


def find_documents(docs: Documents, split: str, doc_ids: list[str]) -> dict[str, int]:
    """Where each of `doc_ids` found among `docs` (`load_documents` of `split`) is: its index,
    in the loader's order (dataset by dataset, shards in manifest order, rows in shard order;
    the first when a doc_id repeats). Reads the doc_id and split columns of the shards."""
    wanted, found, base = pa.array(doc_ids, pa.string()), {}, 0
    for source in docs.sources:
        path = Path(source["path"])
        first = base
        for entry in read_json(path / MANIFEST)["shards"]:
            table = read_table(path / entry["file"], TOKEN_SCHEMA, ["doc_id", "split"])
            ids = table.column("doc_id").filter(pc.equal(table.column("split"), split))
            for row in np.flatnonzero(pc.is_in(ids, value_set=wanted).to_numpy(zero_copy_only=False)):
                found.setdefault(ids[int(row)].as_py(), base + int(row))
            base += len(ids)
        if base - first != source["docs"]:
            raise DataError(f"{path / MANIFEST}: its shards hold {base - first} {split} documents, the loaded split "
                            f"{source['docs']}; the shards changed since they were loaded")
    return found


def _split_tokens(i: _Input, split: str) -> int:
    """The tokens of `split` in a dataset, by its manifest (whose shard counts must add up)."""
    tokens = sum(entry["tokens_per_split"].get(split, 0) for entry in i.manifest["shards"])
    if tokens != i.manifest["tokens_per_split"].get(split, 0):
        raise ShardError(f"{i.path / MANIFEST}: its shards hold {tokens} {split} tokens, its total says "
                         f"{i.manifest['tokens_per_split'].get(split, 0)}; rematerialize")
    return tokens


def _cache_key(inputs: list[_Input], split: str) -> str:
    """Of what the cache is made from: the shards' hashes (`read_manifest` checked the files
    against them), which labels it holds, and the code that makes it."""
    return fingerprint(LOADER_CODE, split,
                       [(_shard_shas(i.manifest), i.judge and _shard_shas(i.judge[1]), i.ref and _shard_shas(i.ref[1]))
                        for i in inputs])


def _made_of(inputs: list[_Input]) -> dict[str, list[str]]:
    """The folders a cache is made from (absolute), each with its shards' sha256s."""
    folders = [folder for i in inputs for folder in ((i.path, i.manifest), i.judge, i.ref) if folder]
    return {str(path.resolve()): _shard_shas(manifest) for path, manifest in folders}


def _shard_shas(manifest: dict) -> list[str]:
    return [s["sha256"] for s in manifest["shards"]]


@contextlib.contextmanager
def _exclusive(cache: Path, wait: bool = True) -> Iterator[bool]:
    """One process at a time (the ranks of a run build a missing cache once, the others wait);
    with `wait=False`, yields False at once when another process holds the cache. The lock files
    stay: deleting one would let two processes lock the same cache through two files."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        f = open(cache.parent / f"{cache.name}.lock", "a")
    except OSError as e:
        raise DataError(f"{cache.parent}: cannot write the data cache here ({e.strerror}); "
                        f"give a writable folder with --cache-dir") from e
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


def _prune(cache_dir: Path) -> None:
    """Delete the caches in `cache_dir` that no load can read again: made by other code (or
    before `meta.json` recorded it), or from shards their folders no longer hold. One that
    another process holds (building or mapping it) is left for a later load."""
    for cache in cache_dir.iterdir():
        if not cache.is_dir() or cache.name.startswith("."):
            continue
        with _exclusive(cache, wait=False) as held:
            if held and cache.is_dir() and _unreadable(cache):
                shutil.rmtree(cache)


def _unreadable(cache: Path) -> bool:
    meta = read_json(cache / CACHE_META) if (cache / CACHE_META).is_file() else {}
    if meta.get("code") != LOADER_CODE:
        return True
    for folder, shas in meta["made_of"].items():
        manifest = Path(folder) / MANIFEST
        if not manifest.is_file() or _shard_shas(read_json(manifest)) != shas:
            return True
    return False


def _build_cache(cache: Path, inputs: list[_Input], split: str, tokenizer: dict, dtypes: dict, tokens: int) -> None:
    """Stream the shards of every dataset, one at a time, into flat `.npy` arrays (never the
    whole split in memory); the folder appears under its name only when complete."""
    for stale in cache.parent.glob(f".tmp-*-{cache.name}"):  # a killed build's
        shutil.rmtree(stale)
    lengths, sources = [], []
    with atomic_path(cache) as tmp, contextlib.ExitStack() as files:
        tmp.mkdir()
        out = {name: files.enter_context(_npy_file(tmp / f"{name}.npy", dtype, tokens)) for name, dtype in dtypes.items()}
        for i in inputs:
            source = {"docs": 0, "tokens": 0, "unannotated_docs": 0, "unlabeled": None}
            for entry in i.manifest["shards"]:
                arrays, shard_lengths, unannotated, unlabeled = _read_shard(i, entry, split, tokenizer)
                for name, f in out.items():
                    arrays[name].astype(dtypes[name], copy=False).tofile(f)
                lengths.append(shard_lengths)
                source["docs"] += len(shard_lengths)
                source["tokens"] += len(arrays["ids"])
                source["unannotated_docs"] += unannotated
                if unlabeled and not source["unlabeled"]:
                    source["unlabeled"] = {"file": entry["file"], "doc_id": unlabeled}
            sources.append(source)
        offsets = np.zeros(sum(map(len, lengths)) + 1, dtype=np.int64)
        np.cumsum(np.concatenate(lengths), out=offsets[1:])
        np.save(tmp / "offsets.npy", offsets)
        write_json(tmp / CACHE_META, {"docs": len(offsets) - 1, "sources": sources,
                                      "code": LOADER_CODE, "made_of": _made_of(inputs)})


def _npy_file(path: Path, dtype, length: int) -> BinaryIO:
    """An open `.npy` file of `length` values, header written: the caller appends the data."""
    f = open(path, "wb")
    np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                                             "shape": (length,)})
    return f


def _read_shard(i: _Input, entry: dict, split: str, tokenizer: dict) -> tuple[dict[str, np.ndarray], np.ndarray, int, str | None]:
    """A shard's `split` documents as flat arrays (ids, classes and the labels `i` reads),
    their lengths, the shard's documents without judge annotation, and the first
    unlabeled document's id (None if every token has a class)."""
    path = i.path / entry["file"]
    table = read_table(path, TOKEN_SCHEMA)
    check_equal_lengths(path, table, ["input_ids", "token_class"])
    keep = pc.equal(table.column("split"), split)
    keep_tok = np.repeat(keep.to_numpy(zero_copy_only=False), pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False))
    arrays, unannotated = {}, 0
    if i.judge is not None:
        jpath = i.judge[0] / entry["file"]
        judge, unannotated = _aligned(jpath, read_table(jpath, JUDGE_SCHEMA), "judge_call", table, path, np.int8, 0)
        arrays["judge_call"] = judge[keep_tok]  # unannotated: docs without LLM annotation have no calls
    if i.ref is not None:
        rpath = i.ref[0] / entry["file"]
        ref, _ = _aligned(rpath, read_table(rpath, REF_LOSS_SCHEMA), "ref_loss", table, path, np.float32, np.nan)
        arrays["ref_loss"] = ref[keep_tok]
        if np.isnan(arrays["ref_loss"]).any():
            raise DataError(f"{rpath}: reference losses missing (null or NaN) for {split} documents; rescore")
    table = table.filter(keep)
    arrays["ids"], arrays["token_class"] = _flat(table.column("input_ids"), np.int32), _flat(table.column("token_class"), np.int8)
    if len(arrays["ids"]) != entry["tokens_per_split"].get(split, 0):
        raise ShardError(f"{path}: {len(arrays['ids'])} {split} tokens, {i.path / MANIFEST} says "
                         f"{entry['tokens_per_split'].get(split, 0)}; rematerialize")
    if len(arrays["ids"]) and (arrays["ids"].min() < 0 or arrays["ids"].max() >= tokenizer["call_token_id"]):
        raise ShardError(f"{path}: token ids outside the text vocabulary [0, {tokenizer['call_token_id']})")
    lengths = pc.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False)
    return arrays, lengths, unannotated, _first_unlabeled(table, arrays["token_class"], lengths)


def _first_unlabeled(table: pa.Table, cls: np.ndarray, lengths: np.ndarray) -> str | None:
    unlabeled = np.flatnonzero(cls == UNLABELED)
    if not len(unlabeled):
        return None
    return table.column("doc_id")[int(np.searchsorted(np.cumsum(lengths), int(unlabeled[0]), side="right"))].as_py()


def _open_cache(cache: Path, dtypes: dict, tokens: int) -> tuple[dict[str, np.ndarray], dict]:
    """The cache's arrays, memory-mapped, after checking their sizes against each other and
    the manifests' token counts (reading only the headers and the last offset)."""
    meta = read_json(cache / CACHE_META)
    expected = {**{name: (dtype, tokens) for name, dtype in dtypes.items()}, "offsets": (np.int64, meta["docs"] + 1)}
    arrays = {}
    for name, (dtype, length) in expected.items():
        path = cache / f"{name}.npy"
        arrays[name] = np.load(path, mmap_mode="r")
        if arrays[name].dtype != dtype or arrays[name].shape != (length,):
            raise DataError(f"{path}: {arrays[name].dtype} x {arrays[name].shape[0]}, expected {np.dtype(dtype)} x {length} "
                            f"({'documents + 1' if name == 'offsets' else 'tokens in the manifests'}); delete {cache} to rebuild it")
    if arrays["offsets"][-1] != tokens:
        raise DataError(f"{cache / 'offsets.npy'}: documents end at token {arrays['offsets'][-1]}, the manifests hold {tokens}; "
                        f"delete {cache} to rebuild it")
    return arrays, meta


@dataclass(frozen=True)
class MicroBatch:
    inputs: torch.Tensor  # (b, T) int64
    targets: torch.Tensor  # (b, T) int64: inputs shifted by one
    labels: TokenLabels  # per target, flattened to (b * T,)
    index: int  # global micro-batch index within its step (0 .. micro_batches_per_step - 1)

    def to(self, device: torch.device) -> MicroBatch:
        move = lambda t: None if t is None else t.to(device, non_blocking=True)  # noqa: E731
        labels = TokenLabels(**{f.name: move(getattr(self.labels, f.name)) for f in fields(TokenLabels)})
        return MicroBatch(move(self.inputs), move(self.targets), labels, self.index)


def sequence_positions(first: int, rows: int, seq_len: int) -> np.ndarray:
    """Stream positions (rows, seq_len + 1) of sequences `first` .. `first + rows - 1`: sequence
    r reads positions r * seq_len .. (r + 1) * seq_len (its inputs, then its targets shifted by one)."""
    return (np.arange(first, first + rows, dtype=np.int64)[:, None] * seq_len
            + np.arange(seq_len + 1, dtype=np.int64))


def pack(docs: Documents, flat: np.ndarray, index: int) -> MicroBatch:
    """The micro-batch whose tokens are `flat` (rows, seq_len + 1), indexes into the flat
    document arrays with -1 for an EOS: inputs, targets and the labels of the targets."""
    eos = flat < 0
    safe = np.where(eos, 0, flat)
    tokens = torch.from_numpy(np.where(eos, int(docs.tokenizer["eos_id"]), docs.ids[safe]).astype(np.int64))
    t_eos, t_safe = eos[:, 1:].reshape(-1), safe[:, 1:].reshape(-1)
    cls = np.where(t_eos, EOS_CLASS, docs.token_class[t_safe])
    judge = ref = None
    if docs.judge_call is not None:
        judge = torch.from_numpy(np.where(t_eos, 0, docs.judge_call[t_safe]).astype(bool))
    if docs.ref_loss is not None:
        ref = torch.from_numpy(np.where(t_eos, np.nan, docs.ref_loss[t_safe]).astype(np.float32))
    labels = TokenLabels(torch.from_numpy(cls == FACT), torch.from_numpy(cls == OTHER), torch.from_numpy(t_eos), judge, ref)
    return MicroBatch(tokens[:, :-1], tokens[:, 1:], labels, index)


class PackedLoader:
    """Micro-batches of packed sequences for one process; see the module docstring."""

    def __init__(
        self,
        docs: Documents,
        seq_len: int,
        micro_batch_size: int,
        micro_batches_per_step: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        if micro_batches_per_step % world_size:
            raise ValueError(f"{micro_batches_per_step} micro-batches per step cannot be split over {world_size} processes")
        self.docs, self.seq_len, self.b, self.g = docs, seq_len, micro_batch_size, micro_batches_per_step
        self.seed, self.rank, self.accum = seed, rank, micro_batches_per_step // world_size
        self.epoch_len = int(docs.offsets[-1]) + docs.num_docs  # every document plus its EOS
        self.step = 0
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def tokens_per_step(self) -> int:
        return self.g * self.b * self.seq_len

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The shuffled document order of an epoch and where each document's EOS starts."""
        if epoch not in self._epochs:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.docs.num_docs)
            starts = np.zeros(len(order) + 1, dtype=np.int64)
            np.cumsum(np.diff(self.docs.offsets)[order] + 1, out=starts[1:])
            self._epochs = {e: v for e, v in self._epochs.items() if e >= epoch - 1}
            self._epochs[epoch] = (order, starts)
        return self._epochs[epoch]

    def _flat_index(self, positions: np.ndarray) -> np.ndarray:
        """Stream positions -> index into the flat document arrays, -1 where the token is EOS."""
        out = np.empty_like(positions)
        epochs = positions // self.epoch_len
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            offset = positions[sel] - epoch * self.epoch_len
            order, starts = self._epoch(int(epoch))
            k = np.searchsorted(starts, offset, side="right") - 1
            within = offset - starts[k]
            out[sel] = np.where(within == 0, -1, self.docs.offsets[order[k]] + within - 1)
        return out

    def micro_batch(self, step: int, index: int) -> MicroBatch:
        """Global micro-batch `index` of optimizer step `step` (a pure function of both)."""
        first = (step * self.g + index) * self.b
        return pack(self.docs, self._flat_index(sequence_positions(first, self.b, self.seq_len)), index)

    def next_step(self) -> tuple[int, list[MicroBatch]]:
        """This process's micro-batches of the next step; advances the position."""
        step, self.step = self.step, self.step + 1
        first = self.rank * self.accum
        return step, [self.micro_batch(step, k) for k in range(first, first + self.accum)]

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.seed, "seq_len": self.seq_len, "micro_batch_size": self.b,
                "micro_batches_per_step": self.g, "fingerprint": self.docs.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("seed", "seq_len", "micro_batch_size", "micro_batches_per_step", "fingerprint"):
            if state[key] != mine[key]:
                raise DataError(f"cannot resume the data position: {key} was {state[key]!r}, is now {mine[key]!r}")
        self.step = int(state["step"])
