"""The report's Figure 3 section (section 3, A.1): for each model with an acceptability result
(`evaluation.measures.acceptability`), per loss bin of the true token, the tokens, accuracy
and acceptability of facts and of non-facts, the tokens without a verdict, and the Figure 3
analogue (`plot_figure3`: accuracy and acceptability against the loss bins, counts below)."""

from __future__ import annotations

import re
from pathlib import Path

from evaluation.measures.acceptability import plot_figure3
from evaluation.report.markdown import image_link, markdown_table, titled_table
from evaluation.report.section import Rows, Section

NAME = "acceptability"  # the evaluation whose results the section reads
TITLE = "Figure 3: accuracy and acceptability by loss bin"
GROUPS = {"fact": "fact", "non_fact": "non-fact"}


def bin_rows(result: dict) -> list[dict]:
    """One row per loss bin: for facts and non-facts, tokens, accuracy and acceptability
    (None: no token, or no verdict), and the tokens of the bin without a verdict."""
    return [{"loss bin": b["bin"],
             **{f"{name} {k}": b[group][k] for group, name in GROUPS.items() for k in ("tokens", "accuracy", "acceptability")},
             "no verdict": b["all"]["unparseable"]} for b in result["bins"]]


def figure_file(label: str) -> str:
    """The figure's file name: `acceptability_` and the label in lower case, runs of other
    characters than a-z and 0-9 as one "_"."""
    return "acceptability_" + re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_") + ".png"


def acceptability_section(rows: Rows, out: Path) -> Section:
    judged = {m: r[NAME] for m, r in rows.items() if r.get(NAME)}
    if not judged:
        return Section(titled_table(TITLE, []), tables={"figure_3_acceptability": "no acceptability results yet"})
    parts, table, figures = [f"## {TITLE}\n"], [], {}
    for label, result in judged.items():
        path = out / figure_file(label)
        tokens = result["overall"]["all"]["tokens"]
        plot_figure3(result, path, f"{label}: {result['documents']} documents, {tokens} tokens, judge {result['judge']}")
        figures[f"figure_3_{path.stem}"] = path
        per_bin = bin_rows(result)
        table += [{"model": label, **row} for row in per_bin]
        parts.append(f"### {label}\n\nJudge `{result['judge']}`, {result['documents']} documents, {tokens} tokens.\n\n"
                     + markdown_table(per_bin) + "\n" + image_link(path, f"Figure 3: {label}"))
    return Section("\n".join(parts), tables={"figure_3_acceptability": table}, figures=figures)
