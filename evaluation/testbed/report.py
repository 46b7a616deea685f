"""The testbed's comparison report: the analogue of Figure 2 (factual precision with a
partner against fact leakage, per popularity bucket), of Figure 5 (call and non-call
validation losses with the matched baseline), the call-decision quality, and what the
paper predicts next to what was measured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trainer.presets import REFERENCE  # noqa: E402

PARTNERS = ("knowledge_base", "reference")


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def precision_of(result: dict, bucket: str, run: str) -> float | None:
    return result["generations"][bucket].get(run, {}).get("precision")


def leakage_of(result: dict, bucket: str) -> float | None:
    return result["leakage"].get(bucket, {}).get("leakage")


def main_rows(results: dict[str, dict]) -> list[dict]:
    rows = []
    for name, r in results.items():
        row = {"model": name}
        for bucket in ("head", "tail"):
            for run in ("no_call", *PARTNERS):
                row[f"{bucket} precision {run}"] = _fmt(precision_of(r, bucket, run))
            row[f"{bucket} facts/gen (KB partner)"] = _fmt(r["generations"][bucket].get("knowledge_base", {}).get("facts_per_generation"), 2)
        for bucket in ("head", "tail", "unseen"):
            row[f"leakage {bucket}"] = _fmt(leakage_of(r, bucket))
        kb = [r["generations"][b].get("knowledge_base", {}).get("calls", {}).get("call_rate") for b in ("head", "tail")]
        row["realized call rate (KB partner, head/tail)"] = "/".join(_fmt(v, 2) for v in kb)
        rows.append(row)
    return rows


def figure2(results: dict[str, dict], out: Path) -> Path:
    """Precision with each partner (y) against leakage without calls (x), head and tail."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, bucket in zip(axes, ("head", "tail")):
        for k, (name, r) in enumerate(results.items()):
            if name == REFERENCE:
                continue
            x = leakage_of(r, bucket)
            color = f"C{k}"
            for run, marker in (("knowledge_base", "o"), ("reference", "s"), ("no_call", "x")):
                y = precision_of(r, bucket, run)
                if x is not None and y is not None:
                    ax.scatter(x, y, marker=marker, color=color, s=50, label=f"{name} ({run})" if bucket == "head" else None)
            y = precision_of(r, bucket, "knowledge_base")
            if x is not None and y is not None:
                ax.annotate(name, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points", color=color)
        ax.set_title(f"{bucket} people")
        ax.set_xlabel("fact leakage (QA, <CALL> at -inf)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("factual precision of biographies")
    if axes[0].get_legend_handles_labels()[0]:
        fig.legend(loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.suptitle("Figure 2 analogue: o = cascade with the knowledge-base partner, s = with the trained partner, x = no calls")
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    path = out / "figure2_precision_vs_leakage.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure5(results: dict[str, dict], out: Path) -> Path:
    """Call and non-call validation losses of each calling model and the matched baseline."""
    names = [n for n, r in results.items() if "baseline_call_loss" in r["validation"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, ("call_loss", "non_call_loss")):
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [results[n]["validation"][key] for n in names], width=0.4, label="model")
        ax.bar([x + 0.2 for x in xs], [results[n]["validation"][f"baseline_{key}"] for n in names], width=0.4, label="matched baseline")
        ax.set_xticks(list(xs), names, rotation=20, fontsize=8)
        ax.set_title(key.replace("_", " "))
        ax.set_ylabel("nats per token")
        ax.legend(fontsize=8)
    fig.suptitle("Figure 5 analogue: validation losses on each model's call mask C_M and its complement")
    fig.tight_layout()
    path = out / "figure5_call_losses.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def decision_rows(results: dict[str, dict]) -> list[dict]:
    rows = []
    for name, r in results.items():
        d = r["call_decisions"]
        rows.append({
            "model": name,
            "head: person values called": _fmt(d["head"]["person_value_called"]),
            "tail: person values called": _fmt(d["tail"]["person_value_called"]),
            "structural values called (head/tail)": f"{_fmt(d['head']['structural_value_called'])}/{_fmt(d['tail']['structural_value_called'])}",
            "other tokens called (tail)": _fmt(d["tail"]["other_called"]),
            "calls on values (tail)": _fmt(d["tail"]["calls_on_values"]),
            "person-value loss head/tail": f"{_fmt(d['head']['person_value_loss'], 2)}/{_fmt(d['tail']['person_value_loss'], 2)}",
            "structural-value loss (tail)": _fmt(d["tail"]["structural_value_loss"], 2),
        })
    return rows


def loss_rows(results: dict[str, dict]) -> list[dict]:
    keys = ("call_loss", "non_call_loss", "baseline_call_loss", "baseline_non_call_loss", "loss_without_call", "calls_on_facts", "facts_called")
    return [{"model": n, **{k: _fmt(r["validation"].get(k)) for k in keys}} for n, r in results.items()]


def verdict(results: dict[str, dict]) -> list[str]:
    """The paper's predictions, each followed by what was measured here."""
    lines = []
    if "lacy" not in results or "baseline" not in results:
        return lines
    lacy, base = results["lacy"], results["baseline"]
    for bucket in ("head", "tail"):
        for run in PARTNERS:
            lp, bp, bn = precision_of(lacy, bucket, run), precision_of(base, bucket, run), precision_of(base, bucket, "no_call")
            if lp is None:
                continue
            better = lp > max(v for v in (bp, bn) if v is not None) if (bp is not None or bn is not None) else None
            lines.append(f"- {bucket}, partner `{run}`: LaCy's cascade precision {_fmt(lp)} vs the baseline's "
                         f"{_fmt(bp)} in the same cascade and {_fmt(bn)} without calls: "
                         f"{'LaCy higher' if better else 'LaCy not higher'}.")
    lt, bt = leakage_of(lacy, "tail"), leakage_of(base, "tail")
    if lt is not None and bt is not None:
        lines.append(f"- tail leakage: LaCy {_fmt(lt)} vs baseline {_fmt(bt)}: {'LaCy leaks less' if lt < bt else 'LaCy does not leak less'}.")
    others = {n: r for n, r in results.items() if n not in (REFERENCE, "baseline", "lacy")}
    for run in PARTNERS:
        lp = precision_of(lacy, "tail", run)
        beaten = [n for n, r in others.items() if lp is not None and (precision_of(r, "tail", run) or 0) >= lp]
        if lp is not None:
            lines.append(f"- tail, partner `{run}`: methods at or above LaCy: {', '.join(beaten) or 'none'}.")
    return lines


def write_report(results: dict[str, dict], out: str | Path, setup: dict, log: Callable[[str], None] = print) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig2, fig5 = figure2(results, out), figure5(results, out)
    ref = results.get(REFERENCE)
    ref_line = ""
    if ref is not None:
        acc = ", ".join(f"{b} {_fmt(v['leakage'])}" for b, v in ref["leakage"].items())
        ref_line = (f"The trained partner (the reference model, {setup['steps'][REFERENCE]} steps) answers the attribute "
                    f"questions correctly at: {acc} (its own attribute accuracy; QA with `<CALL>` at -inf).")
    seconds = setup["seconds"]
    text = "\n\n".join([
        "# Synthetic-biography testbed: comparison report",
        f"World: `{setup['source']}`; people by bucket {setup['buckets']}; tokens {setup['tokens']}; spaCy fact fraction "
        f"{_fmt(setup['fact_fraction'])}. Preset `{setup['preset']}`: {setup['num_params'] / 1e6:.1f}M parameters; steps "
        f"{setup['steps']}. Wall time {seconds.get('total')} s (stages: {seconds}).",
        ref_line,
        "## Factual precision with a partner, and leakage (Figure 2 analogue)",
        "Precision: mean over generations stating at least one attribute value of supported / stated values "
        "(`evaluation.testbed.exact`). Leakage: fraction of attribute questions whose gold value the model writes "
        "with `<CALL>` at -inf (lower = fewer facts in the weights).",
        table(main_rows(results)),
        f"![Figure 2 analogue]({fig2.name})",
        "## What the paper predicts, and what was measured",
        "The paper (5.2, 5.3): LaCy's cascade has the highest factual precision and LaCy leaks the fewest facts.",
        "\n".join(verdict(results)),
        "## Validation losses (Figure 5 analogue)",
        table(loss_rows(results)),
        f"![Figure 5 analogue]({fig5.name})",
        "## Call-decision quality",
        "On train documents of head and tail people: the fraction of value tokens the model's call mask (A.4.3, 15% of "
        "tokens) covers, and the no-call loss of each kind of token. A model that delegates what it cannot learn calls "
        "on the tail's person values, not on the head's nor on structural values (a city's country, an employer's city).",
        table(decision_rows(results)),
    ])
    path = out / "report.md"
    path.write_text(text + "\n")
    log(f"report written: {path}")
    return path
