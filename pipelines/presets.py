"""Data-stage settings per scale. `LACY_PRESET` picks one for the Dagster definitions."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DataPreset:
    vocab_size: int  # SentencePiece pieces before <CALL>
    num_shards: int  # corpus shards = spacy_word_labels partitions


DATA_PRESETS = {
    "embedded": DataPreset(vocab_size=4096, num_shards=4),
    "synthetic": DataPreset(vocab_size=2048, num_shards=2),  # the synthetic-biography world (issue 11)
    "paper-334m": DataPreset(vocab_size=32_000, num_shards=256),
    "paper-1.3b": DataPreset(vocab_size=32_000, num_shards=256),
}


def preset_name() -> str:
    name = os.environ.get("LACY_PRESET", "embedded")
    if name not in DATA_PRESETS:
        raise ValueError(f"LACY_PRESET={name!r}: expected one of {sorted(DATA_PRESETS)}")
    return name


def data_preset() -> DataPreset:
    preset = DATA_PRESETS[preset_name()]
    shards = os.environ.get("LACY_NUM_SHARDS")
    return DataPreset(preset.vocab_size, int(shards)) if shards else preset
