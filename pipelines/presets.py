"""Data-stage settings per scale. `LACY_PRESET` picks one for the Dagster definitions."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DataPreset:
    vocab_size: int  # SentencePiece pieces before <CALL>
    num_shards: int  # corpus shards = spacy_word_labels partitions
    shards_per_run: int  # a labeling backfill runs as runs of at most this many shards (a launcher spreads them)


DATA_PRESETS = {
    "embedded": DataPreset(vocab_size=4096, num_shards=4, shards_per_run=4),
    "synthetic": DataPreset(vocab_size=2048, num_shards=2, shards_per_run=2),  # the synthetic-biography world (issue 11)
    "paper-334m": DataPreset(vocab_size=32_000, num_shards=256, shards_per_run=16),
    "paper-1.3b": DataPreset(vocab_size=32_000, num_shards=256, shards_per_run=16),
}


def preset_name() -> str:
    name = os.environ.get("LACY_PRESET", "embedded")
    if name not in DATA_PRESETS:
        raise ValueError(f"LACY_PRESET={name!r}: expected one of {sorted(DATA_PRESETS)}")
    return name


def data_preset() -> DataPreset:
    """The preset of `LACY_PRESET`, with `LACY_NUM_SHARDS` and `LACY_SHARDS_PER_RUN` if set."""
    preset = DATA_PRESETS[preset_name()]
    # an empty variable counts as unset (docker compose passes `${LACY_NUM_SHARDS:-}` as "")
    num_shards = int(os.environ.get("LACY_NUM_SHARDS") or preset.num_shards)
    per_run = int(os.environ.get("LACY_SHARDS_PER_RUN") or preset.shards_per_run)
    if num_shards < 1 or per_run < 1:
        raise ValueError(f"LACY_NUM_SHARDS={num_shards}, LACY_SHARDS_PER_RUN={per_run}: both must be at least 1")
    return DataPreset(preset.vocab_size, num_shards, per_run)
