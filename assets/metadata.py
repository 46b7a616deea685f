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


def md_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> MetadataValue:
    if not rows:
        return MetadataValue.md("(empty)")
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return MetadataValue.md("\n".join(lines))


def _cell(value) -> str:
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
