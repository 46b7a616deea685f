"""A report is built of sections, each made from the results of every checkpoint the report
shows. A section builder is a function `(rows, out) -> Section`: `rows` maps a model's label
to its row (`{"method", "call_objective", "checkpoint", "partition", <evaluation name>:
its result dict or None, ...}`), `out` is the folder of the report, where it writes its
figures."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

Rows = Mapping[str, dict]


@dataclass(frozen=True)
class Section:
    """A section of a report: `markdown` (its heading, tables, notes and links to its figures,
    ending in a line break), and what a report shows beside it (e.g. as Dagster metadata),
    under names of its own: `tables` (rows, or a sentence saying why there are none) and
    `figures` (a PNG written under the report's folder, or a sentence saying why there is
    none)."""

    markdown: str
    tables: dict[str, list[dict] | str] = field(default_factory=dict)
    figures: dict[str, Path | str] = field(default_factory=dict)


SectionBuilder = Callable[[Rows, Path], Section]
