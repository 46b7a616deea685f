"""Metadata for the Dagster UI: markdown tables and figures (an embedded PNG)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path

from dagster import MetadataValue

from evaluation.report.markdown import markdown_table


def md_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> MetadataValue:
    return MetadataValue.md(markdown_table(rows, columns) if rows else "(empty)")


def md_png(path: Path) -> MetadataValue:
    """The PNG file at `path` inline (base64)."""
    return MetadataValue.md(f"![plot](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})")
