"""`metrics.jsonl` as its readers see it while the trainer writes it: `MetricsTail` reads the
lines appended since the last read; `final_means` summarizes a finished run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


class MetricsTail:
    """The complete lines appended to a metrics.jsonl since the last call, so that a long run's
    file is not re-read at every poll. A resumed trainer rewrites the file in place: when it
    shrank, or the new bytes do not parse, it is read again from the start (callers skip the
    steps they have seen)."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def new_rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        start = self.offset
        with self.path.open("rb") as f:
            if f.seek(0, os.SEEK_END) < start:
                start = 0
            f.seek(start)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # the trainer may be writing the last line
        try:
            rows = [json.loads(line) for line in complete.decode().splitlines() if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError):
            if start == 0:
                raise
            self.offset = 0
            return self.new_rows()
        self.offset = start + len(complete)
        return rows


def final_means(rows: Sequence[dict], keys: Sequence[str]) -> dict[str, float]:
    """`final_<key>`: the mean of each key over the last tenth of the logged rows (at least
    one row; rows where it is null are skipped), rounded to 4 decimals; keys without a value
    there are left out. Less noisy than the last logging step."""
    tail = rows[-max(1, len(rows) // 10) :]
    out = {}
    for key in keys:
        values = [r[key] for r in tail if r.get(key) is not None]
        if values:
            out[f"final_{key}"] = round(sum(values) / len(values), 4)
    return out
