"""Data presets and their environment overrides, down to the labeling backfill's runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.presets import DATA_PRESETS, data_preset

ROOT = Path(__file__).parents[2]


def test_environment_overrides_the_preset(monkeypatch):
    monkeypatch.setenv("LACY_PRESET", "paper-334m")
    assert data_preset() == DATA_PRESETS["paper-334m"]
    monkeypatch.setenv("LACY_NUM_SHARDS", "64")
    monkeypatch.setenv("LACY_SHARDS_PER_RUN", "8")
    assert (data_preset().num_shards, data_preset().shards_per_run, data_preset().vocab_size) == (64, 8, 32_000)
    monkeypatch.setenv("LACY_SHARDS_PER_RUN", "0")
    with pytest.raises(ValueError, match="at least 1"):
        data_preset()
    monkeypatch.setenv("LACY_NUM_SHARDS", "")  # what docker compose passes for an unset `${LACY_NUM_SHARDS:-}`
    monkeypatch.setenv("LACY_SHARDS_PER_RUN", "")
    assert data_preset() == DATA_PRESETS["paper-334m"]


def test_a_labeling_backfill_runs_in_runs_of_shards_per_run():
    """A 256-shard backfill of `spacy_word_labels` under the paper preset: 16 runs of 16
    shards, so a run launcher starts 16 containers; `LACY_SHARDS_PER_RUN` changes it."""
    probe = ("from assets.definitions import defs; a = defs.resolve_assets_def('spacy_word_labels'); "
             "print(len(a.partitions_def.get_partition_keys()), a.backfill_policy.max_partitions_per_run)")
    for extra, expected in (({}, "256 16"), ({"LACY_SHARDS_PER_RUN": "64"}, "256 64")):
        env = {**os.environ, "LACY_PRESET": "paper-334m", **extra}
        env.pop("LACY_NUM_SHARDS", None)
        done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split("\n")[-2] == expected
