"""Markdown for the reports: tables, headed tables, image links and number formatting.

Rules:
- `format_cell`: None is an empty cell; a float has 4 significant digits (`{:.4g}`); anything
  else is `str(value)` with "|" escaped and line breaks turned into spaces.
- `format_number`: a fixed number of decimals (`{:.{digits}f}`); None is `missing`.
- `markdown_table`: a header row, a `|---|` row, one row per mapping; the columns are the
  given ones, else every key in order of first appearance; a missing key is an empty cell.
- `titled_table`: "## {title}", a blank line, the table (or "(no results yet)" without
  rows), a final line break.
- `image_link`: a line "![caption](file name)" between line breaks when the file exists
  (the report's markdown and its figures share a folder), else "".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def format_number(value: float | None, digits: int = 3, missing: str = "–") -> str:
    return missing if value is None else f"{value:.{digits}f}"


def markdown_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    columns = list(columns or dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def titled_table(title: str, rows: Sequence[Mapping]) -> str:
    return f"## {title}\n\n" + (markdown_table(rows) if rows else "(no results yet)") + "\n"


def image_link(path: Path, caption: str) -> str:
    return f"\n![{caption}]({path.name})\n" if path.exists() else ""
