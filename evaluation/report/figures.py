"""Figures of the reports: matplotlib on its file backend (Agg: no display), and one way of
writing a figure: `save_figure`."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110


def save_figure(fig: plt.Figure, path: Path, dpi: int = DPI) -> Path:
    """Write `fig` as a PNG (`dpi`, cropped to its drawn area: bbox "tight") to `path`,
    creating its folder, and close it (pyplot keeps open figures alive); returns `path`."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path
