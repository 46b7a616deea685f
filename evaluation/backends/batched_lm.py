"""A causal LM that reads many sequences in one forward, each with its own KV cache (the
cascade's small model and its local partner, A.5).

Every sequence (a key) owns a row of `RowCache`: per layer, keys/values [rows, heads,
capacity, head_dim], row r holding its sequence's positions 0, 1, ... in order. A read
takes, for each sequence, the tokens after the longest common prefix of its ids with what
its row holds (at least its last token, whose logits are wanted). Rolling a row back to a
common prefix is a change of its length: nothing is copied.

The new tokens of the rows go in as one [rows, T] batch, left-padded to the longest (a
partner token can be several of ours, and a re-tokenized text can diverge), so that every
row's last token is the last column and one column of logits is computed
(`logits_to_keep=1`). Each new token is written into its own row at its true position,
which is also its position id; a pad is written past the row's end, where nothing reads
it. A 4D additive mask lets a token attend to its row's positions up to its own (a pad
only to itself), so rows of any lengths share the forward.

Rows are grouped by their number of new tokens in powers of two (1-2, 3-4, 5-8, ...), one
forward per group, so padding at most doubles a group's work: a step in which every
sequence appends one token is one forward, and a partner's first read of a long prompt
does not pad the other queries of its call to that length.

Works with any Hugging Face causal LM whose attention layers store keys/values through
`past_key_values.update(keys, values, layer_idx)` and take a 4D additive mask and
`position_ids` (GPT-2, Llama, Qwen; not sliding-window or recurrent layers).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


class RowCache:
    """The keys/values of many sequences, one row each (module docstring). `prepare` names
    the rows a forward reads and where each new token goes; each attention layer's `update`
    writes its new keys/values there and returns the rows up to the longest one."""

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.rows = self.capacity = 0  # the size every layer's tensors must have
        self.read = torch.zeros(0, dtype=torch.long)  # the rows of this forward
        self.span: slice | None = None  # the same rows when they are consecutive (read as a view, not copied)
        self.positions = torch.zeros(0, 0, dtype=torch.long)  # [rows read, T]: each new token's position
        self.length = 0  # positions attended to: the longest row's end (pads included)

    def prepare(self, rows: list[int], positions: torch.Tensor, total_rows: int, device: torch.device) -> None:
        """A forward reads `rows` (of `total_rows`) and writes its new tokens at `positions`
        [rows, T]. The tensors grow by half again when too small: a copy per growth, not per
        new sequence or token."""
        self.length = int(positions.max()) + 1
        if total_rows > self.rows:
            self.rows = max(total_rows, self.rows * 3 // 2)
        if self.length > self.capacity:
            self.capacity = max(self.length, self.capacity * 3 // 2)
        self.read = torch.tensor(rows, device=device)
        consecutive = rows == list(range(rows[0], rows[0] + len(rows)))
        self.span = slice(rows[0], rows[0] + len(rows)) if consecutive else None
        self.positions = positions.to(device)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        stored = []
        for held, new in ((self.keys, key_states), (self.values, value_states)):
            if layer_idx == len(held):
                held.append(new.new_zeros(0, new.shape[1], 0, new.shape[3]))
            tensor = held[layer_idx]
            if tensor.shape[0] < self.rows or tensor.shape[2] < self.capacity:
                grown = tensor.new_zeros(self.rows, tensor.shape[1], self.capacity, tensor.shape[3])
                grown[: tensor.shape[0], :, : tensor.shape[2]] = tensor
                held[layer_idx] = tensor = grown
            tensor[self.read[:, None], :, self.positions] = new.transpose(1, 2)
            seen = tensor[:, :, : self.length]
            stored.append(seen[self.span] if self.span else seen.index_select(0, self.read))
        return stored[0], stored[1]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length - self.positions.shape[1]


class BatchedLM:
    """A causal LM over keyed sequences (module docstring). With `reuse_cache=False` each
    sequence is read whole, alone, without padding or cache: the reference the batched path
    must agree with. `max_batch` caps the rows of one forward (0: no cap; 1: one sequence
    per forward, each with its cache)."""

    def __init__(self, model: PreTrainedModel, reuse_cache: bool = True, max_batch: int = 0):
        self.model = model
        self.reuse_cache = reuse_cache
        self.max_batch = max_batch
        self.max_positions = getattr(model.config, "max_position_embeddings", None)
        self.cache = RowCache()
        self._held: dict[Hashable, tuple[int, list[int]]] = {}  # key -> (row, ids whose keys/values it holds)
        self._free: list[int] = []

    def logits(self, rows: Sequence[tuple[Hashable, Sequence[int]]]) -> tuple[torch.Tensor, list[int]]:
        """The logits [len(rows), vocab] of each sequence's last position, and how many of its
        tokens were read (not served from its cache)."""
        if any(len(ids) == 0 for _, ids in rows):
            raise ValueError("empty input")
        with torch.no_grad():
            return self._read_whole(rows) if not self.reuse_cache else self._read_new(rows)

    def _read_new(self, rows: Sequence[tuple[Hashable, Sequence[int]]]) -> tuple[torch.Tensor, list[int]]:
        reads = [self._plan(key, ids) for key, ids in rows]
        groups: dict[int, list[int]] = {}
        for r, (_, _, new) in enumerate(reads):
            groups.setdefault(max(len(new) - 1, 1).bit_length(), []).append(r)  # 1-2, 3-4, 5-8, ...
        size = self.max_batch or len(rows)
        logits: list[torch.Tensor] = [torch.empty(0)] * len(rows)
        for members in groups.values():
            for i in range(0, len(members), size):
                part = members[i:i + size]
                for r, row_logits in zip(part, self._forward([reads[r] for r in part])):
                    logits[r] = row_logits
        for (key, ids), (row, _, _) in zip(rows, reads):
            self._held[key] = (row, list(ids))
        return torch.stack(logits), [len(new) for _, _, new in reads]

    def _read_whole(self, rows: Sequence[tuple[Hashable, Sequence[int]]]) -> tuple[torch.Tensor, list[int]]:
        device = self.model.device
        logits = [self.model(input_ids=torch.tensor([list(ids)], device=device), use_cache=False).logits[0, -1]
                  for _, ids in rows]
        return torch.stack(logits).float(), [len(ids) for _, ids in rows]

    def _plan(self, key: Hashable, ids: Sequence[int]) -> tuple[int, int, list[int]]:
        """The sequence's row, the length of its cache kept, and the tokens to read. Until
        they are read, the row is taken to hold only the kept prefix."""
        row, held = self._held[key] if key in self._held else (self._new_row(), [])
        start = min(common_prefix(held, ids), len(ids) - 1)
        self._held[key] = (row, list(ids[:start]))
        return row, start, list(ids[start:])

    def _forward(self, reads: list[tuple[int, int, list[int]]]) -> torch.Tensor:
        """One forward of the planned reads; the logits [rows, vocab] of their last tokens."""
        news = [new for _, _, new in reads]
        width = max(len(new) for new in news)
        device = self.model.device
        input_ids = torch.zeros(len(reads), width, dtype=torch.long)
        for r, new in enumerate(news):
            input_ids[r, width - len(new):] = torch.tensor(new)
        column = torch.arange(width)
        pads = torch.tensor([width - len(new) for new in news])[:, None]
        start = torch.tensor([start for _, start, _ in reads])[:, None]
        real = column >= pads
        # a new token at its row position; a pad past the row's end (start + new tokens + column)
        positions = torch.where(real, start + column - pads, start + (width - pads) + column)
        self.cache.prepare([row for row, _, _ in reads], positions, len(self._held) + len(self._free), device)
        seen = torch.arange(self.cache.length)
        allowed = (seen <= positions[:, :, None]) & (real[:, :, None] | (seen == positions[:, :, None]))
        dtype = self.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]
        position_ids = positions if self.max_positions is None else positions.clamp(max=self.max_positions - 1)
        out = self.model(input_ids=input_ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
                         past_key_values=self.cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1].float()

    def _new_row(self) -> int:
        return self._free.pop() if self._free else len(self._held) + len(self._free)

    def release(self, key: Hashable) -> None:
        """Forget a sequence; its row is reused by the next new one."""
        if key in self._held:
            self._free.append(self._held.pop(key)[0])
