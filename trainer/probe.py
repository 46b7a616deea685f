"""The mechanism probe: which tokens a method calls while it trains, on one fixed batch.

The probe file (`--probe FILE`, Parquet) names training documents and a kind per token:
columns `doc_id` (string) and `kind` (list<int8>, one code per token of the document's
`input_ids`), and file metadata `{"kinds": [name of code 0, name of code 1, ...]}` (written
by `write_probe`; the trainer knows nothing of what the kinds mean). Every doc_id must be a
document of the loaded train split and every `kind` list as long as its tokens.

The documents are packed as the loader packs them (`trainer.data`): in file order, an EOS
before each, cut into rows of `seq_len` inputs and targets, the labels of each target from
the loaded documents. The stream starts over to fill the last micro-batch (as the loader's
next epoch follows the last); a target there, and an EOS target, has no kind. The 15% of
every mask counts over one micro-batch of `micro_batch_size` rows, as in training.

At every logging step, on rank 0, without gradients, the probe computes per micro-batch the
model's own per-token losses and from them:
- the rule mask: the call mask of the method's rule (`Method.masks`) on those losses, its
  random draws from `mask_generator(seed, step, micro-batch, PROBE)`, a stream training
  never draws from, so a run with and without a probe trains the same weights;
- the decoded mask: the call mask the model decodes from its own `<CALL>` logits (A.4.3,
  `decode_call_mask`, EOS targets excluded as validation excludes them).
It appends one line to `<out>/probe.jsonl` (truncated on resume like metrics.jsonl):

    step                      steps done
    rule, decoded             {kind: share of the kind's tokens in the mask} (null: no such token)
    rule_overlap,             the mask against the previous probe's, over the tokens with a kind:
    decoded_overlap             recalled = |previous & current| / |previous| (null: no previous calls),
                                jaccard = |previous & current| / |previous | current| (null: both empty)
    seconds                   the probe's wall time

On resume from a logged step, the previous probe's masks are recomputed from the restored
weights (the same masks, so the overlaps go on as in a run that was never stopped).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from pipelines.shards import file_metadata, read_table, write_table
from trainer.data import DataError, Documents, MicroBatch, find_documents, pack, sequence_positions
from trainer.decoded_mask import decode_call_mask
from trainer.masks import PROBE, Method, mask_generator
from trainer.objective import logit_stats

PROBE_FILE = "probe.jsonl"
PROBE_SCHEMA = pa.schema([("doc_id", pa.string()), ("kind", pa.list_(pa.int8()))])
NO_KIND = -1  # EOS targets and the targets of the repeated stream


def write_probe(path: str | Path, doc_ids: list[str], kinds: list[np.ndarray], names: list[str]) -> None:
    """A probe file: documents `doc_ids`, `kinds[i]` the codes of document i's tokens, code c
    named `names[c]`."""
    table = pa.table([pa.array(doc_ids, pa.string()), pa.array([np.asarray(k, np.int8) for k in kinds], pa.list_(pa.int8()))],
                     schema=PROBE_SCHEMA)
    write_table(path, table, {"kinds": list(names)})


@dataclass(frozen=True)
class ProbeDocs:
    """A probe file's documents (indexes into the loaded `Documents`), their kinds, the kind names."""

    docs: list[int]
    kinds: list[np.ndarray]
    names: tuple[str, ...]


def read_probe(path: str | Path, docs: Documents) -> ProbeDocs:
    """The probe file at `path`, checked against the loaded train documents `docs`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: probe file missing")
    names = file_metadata(path).get("kinds")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
        raise DataError(f'{path}: file metadata must name the kinds, {{"kinds": ["name of code 0", ...]}} (distinct '
                        f"strings); found {names!r}")
    table = read_table(path, PROBE_SCHEMA)
    doc_ids = table.column("doc_id").to_pylist()
    kinds = table.column("kind").to_pylist()
    found = find_documents(docs, "train", [d for d in doc_ids if d is not None])
    lengths = np.diff(docs.offsets)
    out = []
    for row, (doc_id, kind) in enumerate(zip(doc_ids, kinds)):
        where = f"{path}: row {row} (doc_id {doc_id})"
        if doc_id not in found:
            raise DataError(f"{where}: not a document of the train split of the training data")
        if doc_id in doc_ids[:row]:
            raise DataError(f"{where}: repeats row {doc_ids.index(doc_id)}")
        if kind is None or len(kind) != lengths[found[doc_id]]:
            raise DataError(f"{where}: kind has {0 if kind is None else len(kind)} codes, the document {lengths[found[doc_id]]} tokens")
        kind = np.asarray(kind, np.int8)
        if kind.size and (kind.min() < 0 or kind.max() >= len(names)):
            raise DataError(f"{where}: kind codes must lie in [0, {len(names)}) (one per name in the file metadata); "
                            f"found {int(kind.min())}..{int(kind.max())}")
        out.append(kind)
    if not out:
        raise DataError(f"{path}: no documents")
    return ProbeDocs([found[d] for d in doc_ids], out, tuple(names))


@dataclass(frozen=True)
class ProbeBatch:
    micro_batches: list[MicroBatch]
    kind: torch.Tensor  # int8 per target of all micro-batches, flattened; NO_KIND for no kind
    names: tuple[str, ...]


def probe_batch(probe: ProbeDocs, docs: Documents, seq_len: int, micro_batch_size: int) -> ProbeBatch:
    """The probe's documents packed as the loader packs them (module docstring)."""
    flat = np.concatenate([np.concatenate([[-1], np.arange(docs.offsets[i], docs.offsets[i + 1])]) for i in probe.docs])
    kind = np.concatenate([np.concatenate([[NO_KIND], k]) for k in probe.kinds]).astype(np.int8)
    rows = -(-(len(flat) - 1) // seq_len)
    rows = -(-rows // micro_batch_size) * micro_batch_size
    positions = sequence_positions(0, rows, seq_len)
    first_pass = positions < len(flat)
    flat, kind = flat[positions % len(flat)], np.where(first_pass, kind[positions % len(kind)], NO_KIND)
    batches = [pack(docs, flat[r:r + micro_batch_size], j) for j, r in enumerate(range(0, rows, micro_batch_size))]
    return ProbeBatch(batches, torch.from_numpy(kind[:, 1:].reshape(-1).copy()), probe.names)


def overlap(previous: torch.Tensor | None, current: torch.Tensor) -> dict[str, float | None]:
    """recalled: the share of `previous`'s positions in `current`; jaccard: |previous & current|
    / |previous | current|. Null without a previous mask, or where the denominator is 0."""
    if previous is None:
        return {"recalled": None, "jaccard": None}
    both, before, either = int((previous & current).sum()), int(previous.sum()), int((previous | current).sum())
    return {"recalled": both / before if before else None, "jaccard": both / either if either else None}


class Probe:
    """The probe of one run (rank 0): its batch on the device, the previous probe's masks."""

    def __init__(self, batch: ProbeBatch, method: Method, seed: int, call_id: int, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager]):
        self.batches = [b.to(device) for b in batch.micro_batches]
        self.kind, self.names = batch.kind.to(device), batch.names
        self.method, self.seed, self.call_id, self.autocast = method, seed, call_id, autocast
        self.previous: dict[str, torch.Tensor] | None = None

    @torch.no_grad()
    def masks(self, model: torch.nn.Module, step: int) -> dict[str, torch.Tensor]:
        """The rule and decoded call masks at the model's current weights, over the tokens with a kind."""
        rule, decoded = [], []
        for b in self.batches:
            with self.autocast():
                logits = model(b.inputs)
            logits = logits.view(-1, logits.shape[-1])
            stats = logit_stats(logits, b.targets.reshape(-1), self.call_id)
            rule.append(self.method.masks(b.labels, stats.token_loss, mask_generator(self.seed, step, b.index, PROBE))[0])
            decoded.append(decode_call_mask(logits, self.call_id, candidates=~b.labels.eos))
        kept = self.kind != NO_KIND
        return {"rule": torch.cat(rule)[kept], "decoded": torch.cat(decoded)[kept]}

    def measure(self, model: torch.nn.Module, step: int) -> dict:
        """The probe.jsonl line of `step` (module docstring); remembers its masks."""
        t0 = time.perf_counter()
        masks = self.masks(model, step)
        kind = self.kind[self.kind != NO_KIND]
        line: dict = {"step": step}
        for name, mask in masks.items():
            line[name] = {n: float(mask[kind == c].float().mean()) if bool((kind == c).any()) else None
                          for c, n in enumerate(self.names)}
            line[f"{name}_overlap"] = overlap(None if self.previous is None else self.previous[name], mask)
        self.previous = masks
        line["seconds"] = time.perf_counter() - t0
        return line

    def counts(self) -> dict[str, int]:
        """The probe's tokens of each kind."""
        return {n: int((self.kind == c).sum()) for c, n in enumerate(self.names)}

    def log(self, path: Path, model: torch.nn.Module, step: int) -> dict:
        line = self.measure(model, step)
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")
        return line

    def resume(self, model: torch.nn.Module, step: int, logged: list[int]) -> None:
        """Before going on from `step`: the previous masks are those of the probe at `step` when
        it was logged (recomputed from the restored weights), else none are known."""
        self.previous = self.masks(model, step) if logged and logged[-1] == step else None


def load_probe(path: str | Path, docs: Documents, seq_len: int, micro_batch_size: int, method: Method, seed: int,
               call_id: int, device: torch.device, autocast: Callable[[], contextlib.AbstractContextManager]) -> Probe:
    """The probe of the file at `path` (checked against `docs`), ready to measure."""
    return Probe(probe_batch(read_probe(path, docs), docs, seq_len, micro_batch_size), method, seed, call_id, device, autocast)
