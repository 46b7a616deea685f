"""Metadata helpers: markdown tables and plots (embedded PNG) for the Dagster UI."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from dagster import MetadataValue  # noqa: E402


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """A markdown table of `rows`; columns default to every key, in order of appearance."""
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def md_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> MetadataValue:
    return MetadataValue.md(markdown_table(rows, columns) if rows else "(empty)")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_plot(fig: plt.Figure, save_to: Path | None = None) -> MetadataValue:
    """The figure as an inline PNG (and saved as a file when `save_to` is given)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        save_to.write_bytes(buffer.getvalue())
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return MetadataValue.md(f"![plot](data:image/png;base64,{encoded})")
