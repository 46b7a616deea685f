"""`comparison_report`: the paper's comparisons over every method's latest model: FactScore
(or its proxy) with cascade at the equal call budget against fact leakage without calls
(Figures 2 and 6), call and non-call losses against matched baselines (Figure 5), the call
decision (how the <CALL> logit ranks positions, and the realized call rates of the budgeted
and native cascades), NLU (Table 1) and the labeling cost (Table 2). PNG plots and markdown
tables in the metadata and under artifacts/report/.

The baseline appears twice wherever cascade results are shown: without calls, and with its
untrained <CALL> logit under the same call budget as every other method."""

import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.evaluation import NO_CALL, cascade_generations, fact_leakage, factscore_eval, nlu_eval, validation_losses
from assets.metadata import markdown_table, md_plot, md_table
from assets.resources import LacyStorage
from assets.results import checkpoint_dir, read_result
from assets.training import LATEST, latest_run
from pipelines.files import read_json
from trainer.checkpoint import latest_checkpoint
from trainer.masks import METHODS

NLU_TASKS = ("arc_easy", "hellaswag", "piqa", "social_iqa")
REPORTED = ("validation_losses", "cascade_generations", "factscore", "fact_leakage", "nlu")  # the evaluations the report reads
PAPER_TABLE2 = {"LLM judge": "233 h / 1B tokens, one A100 GPU", "Rho-1": "56 h / 1B tokens, one A100 GPU", "LaCy": "152 h / 1B tokens, one CPU core"}


def collect(storage: LacyStorage) -> dict[str, dict]:
    """label -> {"method", "call_objective", "checkpoint", "partition", each evaluation's result or None}:
    every method's latest model, and beside a calling method's the newest run trained with
    another call objective (e.g. a `renormalized` LaCy run started with `python -m trainer`),
    labelled with that objective."""
    root = storage.path("models")
    rows = {}
    for method, spec in METHODS.items():
        if not (root / method / LATEST).exists():
            continue
        latest = latest_checkpoint(Path(latest_run(storage, method)["run_dir"]))
        models = {spec.label: latest}
        if spec.calls:
            runs = sorted((c for c in map(latest_checkpoint, (root / method).glob("run-*")) if c), key=lambda c: c.path.stat().st_mtime)
            for other in runs:  # the newest run of each objective wins
                objective = other.info.get("call_objective")
                if objective != latest.info.get("call_objective"):
                    models[f"{spec.label} ({objective})"] = other
        for label, checkpoint in models.items():
            key = str(checkpoint.path.relative_to(root))
            rows[label] = {"method": method, "call_objective": checkpoint.info.get("call_objective"),
                           "checkpoint": str(checkpoint.path), "partition": key,
                           **{name: read_result(storage, key, name) for name in REPORTED}}
    return rows


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


def factscore_vs_leakage(rows: dict, save_to: Path) -> MetadataValue | str:
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
    ax.set_xlabel("fact leakage without calls (PopQA LT + BigBench QA Wikidata), lower is better")
    ax.set_ylabel(f"{points[0][2]} with cascade at the equal call budget, higher is better")
    ax.set_title("Figures 2 and 6: factuality with cascade vs fact leakage")
    return md_plot(fig, save_to)


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


def call_losses(rows: dict, save_to: Path) -> MetadataValue | str:
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
    return md_plot(fig, save_to)


def nlu_table(rows: dict) -> list[dict]:
    table = []
    for m, r in rows.items():
        if r["nlu"]:
            accs = {t: 100 * r["nlu"]["tasks"][t]["acc"] for t in NLU_TASKS if t in r["nlu"]["tasks"]}
            table.append({"model": m, **{t: round(v, 1) for t, v in accs.items()}, "average": round(float(np.mean(list(accs.values()))), 1)})
    return table


def summary_table(rows: dict) -> list[dict]:
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


AUCS = {"call_auc_own_rule": "AUC vs own rule", "call_auc_facts": "AUC vs spaCy facts", "call_auc_hard_tokens": "AUC vs hard tokens"}


def call_decision_table(rows: dict) -> list[dict]:
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


def call_aucs(rows: dict, save_to: Path) -> MetadataValue | str:
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
    return md_plot(fig, save_to)


def cost_table(storage: LacyStorage) -> list[dict]:
    """Table 2 from what was measured here: the labeling benchmark and the reference scoring."""
    rows = [{"method": "Loss-based", "preprocessing here": "none", "paper": "none"}]
    bench = storage.path("bench", "labeling.json")
    labeling = f"{1e9 / read_json(bench)['tokens_per_s_per_core'] / 3600:.0f} h / 1B tokens, one CPU core" if bench.exists() else "run `make bench`"
    ref = storage.path("reference_losses", "manifest.json")
    if ref.exists():
        m = read_json(ref)
        scoring = f"{1e9 * m['seconds'] / max(m['tokens'], 1) / 3600:.0f} h / 1B tokens (reference model scoring, this machine)"
    else:
        scoring = "materialize reference_losses"
    rows += [
        {"method": "LLM judge", "preprocessing here": "not run: LMLM's annotations are given", "paper": PAPER_TABLE2["LLM judge"]},
        {"method": "Rho-1", "preprocessing here": scoring, "paper": PAPER_TABLE2["Rho-1"]},
        {"method": "LaCy", "preprocessing here": labeling, "paper": PAPER_TABLE2["LaCy"]},
    ]
    return rows


def markdown(title: str, rows: list[dict]) -> str:
    return f"## {title}\n\n" + (markdown_table(rows) if rows else "(no results yet)") + "\n"


def image(path: Path, caption: str) -> str:
    return f"\n![{caption}]({path.name})\n" if path.exists() else ""


def provenance(storage: LacyStorage) -> str:
    """The code's commit and the data's fingerprint, so a published copy names what it measured."""
    git = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=Path(__file__).parent)
    commit = git.stdout.strip() or "not a git checkout"
    manifest = storage.path("token_shards", "manifest.json")
    data = read_json(manifest)["fingerprint"] if manifest.exists() else "no token shards"
    return f"Written by `comparison_report` (`make evaluate`), not by hand. Code `{commit}`, token shards `{data}`.\n"


@asset(
    group_name="evaluation",
    deps=[validation_losses, cascade_generations, factscore_eval, fact_leakage, nlu_eval],
)
def comparison_report(context: AssetExecutionContext, storage: LacyStorage) -> MaterializeResult:
    """The paper's comparisons over every method's latest model: Figures 2/6 and 5, the call
    decision and realized call rates, Tables 1 and 2."""
    rows = collect(storage)
    out = storage.path("report")
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.png"):  # a figure with no data now must not show an earlier one
        stale.unlink()
    missing = [f"{m}: {', '.join(k for k in REPORTED if not r[k])}" for m, r in rows.items() if not all(r[k] for k in REPORTED)]
    for line in missing:
        context.log.warning(f"not evaluated yet: {line}")
    figure2_png, figure5_png, aucs_png = out / "factscore_vs_leakage.png", out / "call_losses.png", out / "call_aucs.png"
    figure2 = factscore_vs_leakage(rows, figure2_png)
    figure5 = call_losses(rows, figure5_png)
    aucs = call_aucs(rows, aucs_png)
    summary, decision, nlu, cost = summary_table(rows), call_decision_table(rows), nlu_table(rows), cost_table(storage)
    notes = [f"- {m}: {k.replace('_', ' ')} not measured: {reason}" for m, r in rows.items() if r["validation_losses"]
             for k, reason in r["validation_losses"].get("call_auc_notes", {}).items()]
    report = "# LaCy comparison report\n\n" + provenance(storage) + "\n" + "\n".join(
        [markdown("Methods", summary) + image(figure2_png, "Figures 2 and 6") + image(figure5_png, "Figure 5"),
         markdown("Call decision", decision) + "\n".join(notes) + "\n" + image(aucs_png, "Call decision AUCs"),
         markdown("Table 1: NLU accuracy (%) without cascade", nlu), markdown("Table 2: cost of producing pretraining labels", cost)]
    )
    if missing:
        report += "\n## Not evaluated yet\n\n" + "\n".join(f"- {line}" for line in missing) + "\n"
    (out / "report.md").write_text(report)
    return MaterializeResult(
        metadata={
            "methods": len(rows),
            "figure_2_6_factscore_vs_leakage": figure2,
            "figure_5_call_losses": figure5,
            "call_decision_aucs": aucs,
            "call_decision": md_table(decision) if decision else "no trained methods yet",
            "summary": md_table(summary) if summary else "no trained methods yet",
            "table_1_nlu": md_table(nlu) if nlu else "no NLU results yet",
            "table_2_cost": md_table(cost),
            "report": MetadataValue.path(str(out / "report.md")),
            "checkpoints": MetadataValue.json({m: str(checkpoint_dir(storage, r["partition"])) for m, r in rows.items()}),
        }
    )
