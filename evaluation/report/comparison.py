"""The comparison report over every method's latest model: FactScore (or its proxy) with
cascade at the equal call budget against fact leakage without calls (Figures 2 and 6), call
and non-call losses against matched baselines (Figure 5), the call decision (how the <CALL>
logit ranks positions, and the realized call rates of the budgeted and native cascades), NLU
(Table 1) and the labeling cost (Table 2). Tables in markdown, figures as PNG files beside
`report.md`.

The baseline appears twice wherever cascade results are shown: without calls, and with its
untrained <CALL> logit under the same call budget as every other method.

The sections (`evaluation.report.section`) read the rows of `assets.report.collect`:
`methods_section` (the summary table, Figures 2/6 and 5), `call_decision_section`,
`nlu_section`; `cost_section` is built from the measured costs, not from the rows.
`write_comparison_report` puts them together."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.report.figures import plt, save_figure
from evaluation.report.markdown import image_link, titled_table
from evaluation.report.section import Rows, Section, SectionBuilder
from trainer.masks import METHODS

NO_CALL = "no_call"  # the cascade mode a model trained without calls also runs (its FactScore result's key)
NLU_TASKS = ("arc_easy", "hellaswag", "piqa", "social_iqa")
PAPER_TABLE2 = {"LLM judge": "233 h / 1B tokens, one A100 GPU", "Rho-1": "56 h / 1B tokens, one A100 GPU", "LaCy": "152 h / 1B tokens, one CPU core"}
AUCS = {"call_auc_own_rule": "AUC vs own rule", "call_auc_facts": "AUC vs spaCy facts", "call_auc_hard_tokens": "AUC vs hard tokens"}
TITLE = "# LaCy comparison report"


def leakage_score(result: dict) -> float:
    """Mean containment over PopQA long tail and BigBench qa_wikidata (lower is better)."""
    return float(np.mean([result["popqa"]["leakage"], result["bigbench_qa_wikidata"]["leakage"]]))


def factuality(result: dict) -> tuple[str, float]:
    """FactScore when a judge produced it, else the clearly named lexical proxy."""
    if "factscore" in result:
        return "FactScore", result["factscore"]["score"]
    return "fact_overlap_proxy (not FactScore)", result["fact_overlap_proxy"]["score"]


def cascade_entries(label: str, row: dict) -> list[tuple[str, dict | None]]:
    """(name, factscore result) of each cascade a method is shown with: the budgeted one, and
    for a model trained without calls also the one without calls, each named for what it is."""
    factscore = row["factscore"]
    if METHODS[row["method"]].calls:
        return [(label, factscore)]
    budget = (row["cascade_generations"] or {}).get("config", {}).get("call_budget")
    at = f"at the {budget:.0%} call budget" if budget is not None else "at the call budget"
    return [(f"{label}, without calls", factscore and factscore.get(NO_CALL)),
            (f"{label}, untrained <CALL> logit {at}", factscore)]


def spread_labels(xs: list[float], ys: list[float], min_gap: float, x_near: float) -> list[float]:
    """Label heights for points at (xs, ys): each at its point, moved up just enough to keep
    `min_gap` from the labels of lower points within `x_near` horizontally."""
    label_ys = list(ys)
    placed: list[int] = []
    for i in sorted(range(len(ys)), key=lambda i: ys[i]):
        for j in sorted(placed, key=lambda j: label_ys[j]):
            if abs(xs[i] - xs[j]) < x_near and label_ys[i] < label_ys[j] + min_gap:
                label_ys[i] = label_ys[j] + min_gap
        placed.append(i)
    return label_ys


def factscore_vs_leakage(rows: Rows, path: Path) -> Path | str:
    """Figures 2 and 6 written to `path`, or why there is none."""
    points = [(name, leakage_score(r["fact_leakage"]), *factuality(f)) for m, r in rows.items()
              for name, f in cascade_entries(m, r) if r["fact_leakage"] and f]
    if not points:
        return "no method has both fact leakage and FactScore results yet"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    xs, ys = [p[1] for p in points], [p[3] for p in points]
    x_pad = max(np.ptp(xs) * 0.15, 0.01)  # leakage is a fraction; all equal (e.g. 0) still gets a readable axis
    ax.set_xlim(min(xs) - x_pad, max(xs) + 3 * x_pad)
    label_ys = spread_labels(xs, ys, min_gap=max(np.ptp(ys), 1e-3) * 0.05, x_near=x_pad)
    for (name, x, _, y), label_y in zip(points, label_ys):
        ax.scatter(x, y, s=50, color="#c0392b" if name.startswith("LaCy") else "#34495e")
        ax.annotate(name, (x, y), xytext=(x + x_pad * 0.3, label_y), fontsize=8, va="center",
                    arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if label_y != y else None)
    if np.ptp(xs) == 0:
        ax.text(0.98, 0.98, f"every model leaks {xs[0]:.3g} at this scale", transform=ax.transAxes, ha="right", va="top",
                fontsize=8, color="0.4")
    ax.set_xlabel("fact leakage without calls (PopQA LT + BigBench QA Wikidata)\nlower is better")
    ax.set_ylabel(f"{points[0][2]} with cascade\nat the equal call budget, higher is better")
    ax.set_title("Figures 2 and 6: factuality with cascade vs fact leakage")
    return save_figure(fig, path)


def call_losses(rows: Rows, path: Path) -> Path | str:
    """Figure 5 written to `path`, or why there is none."""
    methods = [m for m, r in rows.items() if r["validation_losses"] and METHODS[r["method"]].calls]
    if not methods:
        return "no calling method has validation losses yet"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = np.arange(len(methods))
    for ax, kind in zip(axes, ("call_loss", "non_call_loss")):
        own = [rows[m]["validation_losses"][kind] for m in methods]
        matched = [rows[m]["validation_losses"].get(f"baseline_{kind}") or np.nan for m in methods]
        ax.bar(x - 0.2, own, 0.4, label="method", color="#2c7fb8")
        ax.bar(x + 0.2, matched, 0.4, label="baseline on the same mask", color="#a6cee3")
        ax.set_xticks(x, list(methods), rotation=35, ha="right", fontsize=8)
        ax.set_title(kind.replace("_", " ").replace("non call", "non-call"))
        ax.set_ylabel("nats per token")
    axes[0].legend()
    fig.suptitle("Figure 5: validation losses with each method's 15% call mask")
    return save_figure(fig, path)


def call_aucs(rows: Rows, path: Path) -> Path | str:
    """The call decision's ROC AUCs per method written to `path`, or why there is none."""
    methods = [m for m, r in rows.items() if r["validation_losses"]]
    if not methods:
        return "no method has validation results yet"
    fig, ax = plt.subplots(figsize=(9, 4))
    x = np.arange(len(methods))
    width = 0.8 / len(AUCS)
    for i, (key, label) in enumerate(AUCS.items()):
        values = [rows[m]["validation_losses"].get(key) for m in methods]
        ax.bar(x + (i - 1) * width, [np.nan if v is None else v for v in values], width, label=label)
    ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
    ax.text(len(methods) - 0.5, 0.5, "chance", ha="right", va="bottom", fontsize=8, color="0.4")
    ax.set_xticks(x, list(methods), rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("ROC AUC of the <CALL> logit")
    ax.set_title("Call decision on validation (missing bar: reference not available, see the table notes)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def nlu_table(rows: Rows) -> list[dict]:
    table = []
    for m, r in rows.items():
        if r["nlu"]:
            accs = {t: 100 * r["nlu"]["tasks"][t]["acc"] for t in NLU_TASKS if t in r["nlu"]["tasks"]}
            table.append({"model": m, **{t: round(v, 1) for t, v in accs.items()}, "average": round(float(np.mean(list(accs.values()))), 1)})
    return table


def summary_table(rows: Rows) -> list[dict]:
    table = []
    for m, r in rows.items():
        v, leak = r["validation_losses"], r["fact_leakage"]
        for name, f in cascade_entries(m, r):
            table.append({
                "model": name,
                "checkpoint": r["partition"],
                "call loss": v["call_loss"] if v else None,
                "baseline call loss": v.get("baseline_call_loss") if v else None,
                "non-call loss": v["non_call_loss"] if v else None,
                "baseline non-call loss": v.get("baseline_non_call_loss") if v else None,
                factuality(f)[0] if f else "FactScore": factuality(f)[1] if f else None,
                "fact leakage": leakage_score(leak) if leak else None,
                "PopQA leakage": leak["popqa"]["leakage"] if leak else None,
                "BigBench leakage": leak["bigbench_qa_wikidata"]["leakage"] if leak else None,
            })
    return table


def call_decision_table(rows: Rows) -> list[dict]:
    """Per method: how its <CALL> logit ranks validation positions, and how often its cascade
    calls at the equal budget and natively (where <CALL> is the argmax)."""
    table = []
    for m, r in rows.items():
        v, c = r["validation_losses"] or {}, r["cascade_generations"] or {}
        rates = {mode: c["modes"][mode]["summary"]["call_rate"] for mode in c.get("modes", {})}
        table.append({
            "model": m if METHODS[r["method"]].calls else f"{m} (untrained <CALL> logit)",
            "call objective": r.get("call_objective") or "-",
            "<CALL> top fraction": v.get("call_top_fraction"),
            "p(CALL) at calls": v.get("mean_p_call_at_calls"),
            "p(CALL) elsewhere": v.get("mean_p_call_at_non_calls"),
            **{label: v.get(key) for key, label in AUCS.items()},
            "call loss (p)": v.get("call_loss"),
            "call loss (p\\CALL)": v.get("call_loss_without_call"),
            "call rate, budgeted": rates.get("budgeted"),
            "call rate, native": rates.get("native"),
        })
    return table


def cost_table(labeling: dict | None, scoring: dict | None) -> list[dict]:
    """Table 2 from what was measured here: `labeling` the labeling benchmark
    (`bench/labeling.json`: tokens_per_s_per_core), `scoring` the reference scoring's
    manifest (`reference_losses/manifest.json`: seconds, tokens); None where not measured."""
    rows = [{"method": "Loss-based", "preprocessing here": "none", "paper": "none"}]
    if labeling is not None:
        labeled = f"{1e9 / labeling['tokens_per_s_per_core'] / 3600:.0f} h / 1B tokens, one CPU core"
    else:
        labeled = "run `make bench`"
    if scoring is not None:
        scored = f"{1e9 * scoring['seconds'] / max(scoring['tokens'], 1) / 3600:.0f} h / 1B tokens (reference model scoring, this machine)"
    else:
        scored = "materialize reference_losses"
    rows += [
        {"method": "LLM judge", "preprocessing here": "not run: LMLM's annotations are given", "paper": PAPER_TABLE2["LLM judge"]},
        {"method": "Rho-1", "preprocessing here": scored, "paper": PAPER_TABLE2["Rho-1"]},
        {"method": "LaCy", "preprocessing here": labeled, "paper": PAPER_TABLE2["LaCy"]},
    ]
    return rows


# ---------------------------------------------------------------- sections


def methods_section(rows: Rows, out: Path) -> Section:
    """The summary table with Figures 2/6 (factuality against leakage) and 5 (losses)."""
    summary = summary_table(rows)
    figure2 = factscore_vs_leakage(rows, out / "factscore_vs_leakage.png")
    figure5 = call_losses(rows, out / "call_losses.png")
    markdown = (titled_table("Methods", summary) + image_link(out / "factscore_vs_leakage.png", "Figures 2 and 6")
                + image_link(out / "call_losses.png", "Figure 5"))
    return Section(markdown, tables={"summary": summary or "no trained methods yet"},
                   figures={"figure_2_6_factscore_vs_leakage": figure2, "figure_5_call_losses": figure5})


def call_decision_section(rows: Rows, out: Path) -> Section:
    """The call-decision table, the AUCs that were not measured and why, and their figure."""
    decision = call_decision_table(rows)
    aucs = call_aucs(rows, out / "call_aucs.png")
    notes = [f"- {m}: {k.replace('_', ' ')} not measured: {reason}" for m, r in rows.items() if r["validation_losses"]
             for k, reason in r["validation_losses"].get("call_auc_notes", {}).items()]
    markdown = titled_table("Call decision", decision) + "\n".join(notes) + "\n" + image_link(out / "call_aucs.png", "Call decision AUCs")
    return Section(markdown, tables={"call_decision": decision or "no trained methods yet"}, figures={"call_decision_aucs": aucs})


def nlu_section(rows: Rows, out: Path) -> Section:
    """Table 1."""
    nlu = nlu_table(rows)
    return Section(titled_table("Table 1: NLU accuracy (%) without cascade", nlu), tables={"table_1_nlu": nlu or "no NLU results yet"})


def cost_section(labeling: dict | None, scoring: dict | None) -> Section:
    """Table 2 (`cost_table`)."""
    cost = cost_table(labeling, scoring)
    return Section(titled_table("Table 2: cost of producing pretraining labels", cost), tables={"table_2_cost": cost})


# ---------------------------------------------------------------- the report


def code_commit() -> str:
    """`git describe --always --dirty` of this checkout, or "not a git checkout"."""
    git = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).parent)
    return git.stdout.strip() or "not a git checkout"


def provenance(commit: str, shards: str) -> str:
    """The code's commit and the data's fingerprint, so a published copy names what it measured."""
    return f"Written by `comparison_report` (`make evaluate`), not by hand. Code `{commit}`, token shards `{shards}`.\n"


def not_evaluated(rows: Rows, evaluations: Sequence[str]) -> list[str]:
    """"label: name, name" for each model lacking the result of some of `evaluations`."""
    return [f"{m}: {', '.join(k for k in evaluations if not r[k])}" for m, r in rows.items() if not all(r[k] for k in evaluations)]


@dataclass(frozen=True)
class ComparisonReport:
    path: Path  # report.md
    sections: list[Section]
    missing: list[str]  # `not_evaluated`


def write_comparison_report(rows: Rows, builders: Sequence[SectionBuilder], closing: Sequence[Section],
                            evaluations: Sequence[str], out: Path, header: str) -> ComparisonReport:
    """`out/report.md`: the title, `header`, the sections of `builders` (in their order) and
    then `closing`, one line break between sections, and a list of the models not evaluated
    yet by every one of `evaluations`. The PNG files in `out` are removed first: a figure with
    no data now must not show an earlier one."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):
        stale.unlink()
    sections = [build(rows, out) for build in builders] + list(closing)
    missing = not_evaluated(rows, evaluations)
    text = f"{TITLE}\n\n{header}\n" + "\n".join(s.markdown for s in sections)
    if missing:
        text += "\n## Not evaluated yet\n\n" + "\n".join(f"- {line}" for line in missing) + "\n"
    path = out / "report.md"
    path.write_text(text)
    return ComparisonReport(path, sections, missing)
