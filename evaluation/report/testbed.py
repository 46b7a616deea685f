"""The testbed's reports: a scenario's over its seeds (`write_report`) and the sweep's over
its scenarios (`write_sweep_report`). Every number is a mean with a 95% interval from the
two-level bootstrap of `evaluation.report.intervals` (over seeds, and over the people prompted
or the questions asked within a seed); a comparison is worded only by the interval of its
difference ("higher", "lower", "no measured difference").

Sections: the setup (world, R, sizes, steps, times); the paper's two claims (5.2: LaCy's cascade
has the highest factual precision; 5.3: LaCy leaks the fewest facts) as LaCy's differences to the
baseline and to every other method; the Figure 2 analogue (precision with a partner against
leakage) and the Figure 6 analogue (LaCy's ablations); the calls made, declined and rejected;
the partner's accuracy; the Figure 5 losses; the call decisions by token kind; the mechanism
(the training probe: which kinds each method's rule calls, and whether its choice freezes); the
acceptability analysis of section 3 (Figure 3 analogue, the baseline, the exact judge).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from evaluation.measures.acceptability import TABLE_FILE
from evaluation.report.figures import save_figure
from evaluation.report.intervals import Estimate, bootstrap, difference, paired_difference
from evaluation.report.markdown import markdown_table
from evaluation.testbed.cell import MODELS, SWEEP, Cell, cells_of
from pipelines.classes import FACT, GRAMMATICAL, OTHER
from pipelines.files import read_json
from trainer.masks import METHODS
from trainer.presets import REFERENCE

RUNS = ("no_call", "oracle", "partner")  # biographies without calls, and in a cascade with each partner
PARTNER_RUNS = ("oracle", "partner")
BUCKETS = ("head", "tail")
ABLATIONS = ("lacy", "spacy", "spacy_refloss", "lacy_ignorefacts", "lacy_ignore")  # Figure 6
PROBE_KINDS = ("head_value", "tail_value", "structural_value", "title_name", "other")
LOW_LOSS, HIGH_LOSS = 1.0, 4.0  # nats: the acceptability section's "low" and "high" loss
LABELS = {REFERENCE: "reference (partner)", **{m: METHODS[m].label for m in METHODS}}

Results = dict[str, dict]  # model name -> its evaluation result, one cell


def load_cell(cell: Cell) -> Results:
    return {name: read_json(cell.evaluation_file(name)) for name in MODELS if cell.evaluation_file(name).exists()}


# ---------------------------------------------------------------- units


def precision_units(result: dict, bucket: str, run: str) -> np.ndarray:
    """Per person prompted: supported / stated facts, NaN when the biography states none."""
    run_result = result["generations"][bucket].get(run)
    if run_result is None:
        return np.array([])
    stated = np.asarray(run_result["stated_by_generation"], dtype=np.float64)
    supported = np.asarray(run_result["supported_by_generation"], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(stated > 0, supported / stated, np.nan)


def leakage_units(result: dict, bucket: str) -> np.ndarray:
    """Per question: 1 when the output contains the answer, NaN when not scored."""
    hits = result["leakage"].get(bucket, {}).get("contained_by_question", [])
    return np.array([np.nan if h is None else h for h in hits], dtype=np.float64)


def per_seed(cells: Sequence[Results], name: str, units: Callable[[dict], np.ndarray]) -> list[np.ndarray]:
    return [units(c[name]) for c in cells if name in c]


def precision_of(cells: Sequence[Results], name: str, bucket: str, run: str) -> Estimate:
    return bootstrap(per_seed(cells, name, lambda r: precision_units(r, bucket, run)))


def leakage_of(cells: Sequence[Results], name: str, bucket: str) -> Estimate:
    return bootstrap(per_seed(cells, name, lambda r: leakage_units(r, bucket)))


def paired(cells: Sequence[Results], a: str, b: str, units: Callable[[dict], np.ndarray]) -> Estimate:
    both = [c for c in cells if a in c and b in c]
    return paired_difference([units(c[a]) for c in both], [units(c[b]) for c in both])


def scalar_of(cells: Sequence[Results], name: str, value: Callable[[dict], float | None]) -> Estimate:
    """A per-seed number (a validation loss, a call rate) over seeds."""
    values = [value(c[name]) for c in cells if name in c]
    return bootstrap([[np.nan if v is None else v] for v in values])


# ---------------------------------------------------------------- tables


def models_in(cells: Sequence[Results]) -> list[str]:
    return [m for m in MODELS if any(m in c for c in cells)]


def precision_rows(cells: Sequence[Results]) -> list[dict]:
    rows = []
    for name in models_in(cells):
        row = {"model": LABELS[name]}
        for bucket in BUCKETS:
            for run in RUNS:
                row[f"{bucket}: {run}"] = precision_of(cells, name, bucket, run).text()
        for bucket in (*BUCKETS, "unseen"):
            row[f"leakage {bucket}"] = leakage_of(cells, name, bucket).text()
        rows.append(row)
    return rows


def claim_rows(cells: Sequence[Results], other: str) -> list[dict]:
    """LaCy minus `other`: precision with each partner (and without calls) per bucket, and
    leakage per bucket."""
    rows = []
    for bucket in BUCKETS:
        for run in RUNS:
            e = paired(cells, "lacy", other, lambda r, b=bucket, u=run: precision_units(r, b, u))
            rows.append({"measure": f"precision, {bucket}, {run}", "LaCy - " + LABELS[other]: e.text(), "verdict": e.verdict()})
    for bucket in BUCKETS:
        e = paired(cells, "lacy", other, lambda r, b=bucket: leakage_units(r, b))
        rows.append({"measure": f"leakage, {bucket}", "LaCy - " + LABELS[other]: e.text(),
                     "verdict": e.verdict("LaCy leaks more", "LaCy leaks less")})
    return rows


def claims(cells: Sequence[Results]) -> list[str]:
    """The paper's two claims against the baseline, and LaCy against every other method."""
    if not all(m in models_in(cells) for m in ("lacy", "baseline")):
        return ["(LaCy and the baseline are both needed)"]
    lines = []
    for bucket in BUCKETS:
        for run in PARTNER_RUNS:
            e = paired(cells, "lacy", "baseline", lambda r, b=bucket, u=run: precision_units(r, b, u))
            lines.append(f"- 5.2, {bucket} people, partner `{run}`: LaCy's cascade minus the baseline's precision "
                         f"{e.text()}: **{e.verdict('LaCy higher', 'LaCy lower')}**.")
    for bucket in BUCKETS:
        e = paired(cells, "lacy", "baseline", lambda r, b=bucket: leakage_units(r, b))
        lines.append(f"- 5.3, {bucket} people: LaCy's leakage minus the baseline's {e.text()}: "
                     f"**{e.verdict('LaCy leaks more', 'LaCy leaks less')}**.")
    for run in PARTNER_RUNS:
        for bucket in BUCKETS:
            above = []
            for other in models_in(cells):
                if other in ("lacy", REFERENCE):
                    continue
                e = paired(cells, "lacy", other, lambda r, b=bucket, u=run: precision_units(r, b, u))
                above.append(f"{LABELS[other]}: {e.verdict('lower', 'higher')}")
            lines.append(f"- against every method, {bucket}, partner `{run}` (each method's precision relative to LaCy's): "
                         + "; ".join(above) + ".")
    return lines


def call_rows(cells: Sequence[Results]) -> list[dict]:
    rows = []
    for name in models_in(cells):
        row = {"model": LABELS[name]}
        for run in PARTNER_RUNS:
            def share(r: dict, key: str, run=run) -> float | None:
                calls = [r["generations"][b].get(run, {}).get("calls") for b in BUCKETS]
                made = sum(c["calls"] for c in calls if c)
                return sum(c.get(key, 0) for c in calls if c) / made if made else None

            row[f"call rate ({run})"] = scalar_of(cells, name, lambda r, run=run: np.mean(
                [r["generations"][b][run]["calls"]["call_rate"] for b in BUCKETS if run in r["generations"][b]] or [np.nan])).text(3)
            row[f"declined ({run})"] = scalar_of(cells, name, lambda r, s=share: s(r, "declined_calls")).text(3)
            row[f"rejected ({run})"] = scalar_of(cells, name, lambda r, s=share: s(r, "rejected_calls")).text(3)
        rows.append(row)
    return rows


def partner_rows(cells: Sequence[Results]) -> list[dict]:
    """The partner's attribute accuracy (with its background, and alone) against every small
    model's (its leakage: the same questions)."""
    rows = []
    if any(REFERENCE in c and "background_accuracy" in c[REFERENCE] for c in cells):
        row = {"model": "partner, with the person's record (as in the cascade)"}
        for bucket in (*BUCKETS, "unseen"):
            row[bucket] = bootstrap(per_seed(cells, REFERENCE, lambda r, b=bucket: np.asarray(
                r.get("background_accuracy", {}).get(b, {}).get("correct_by_question", []), dtype=np.float64))).text()
        rows.append(row)
    for name in models_in(cells):
        rows.append({"model": f"{LABELS[name]}, alone (3-shot QA)", **{b: leakage_of(cells, name, b).text() for b in (*BUCKETS, "unseen")}})
    return rows


def loss_rows(cells: Sequence[Results]) -> list[dict]:
    keys = ("call_loss", "non_call_loss", "baseline_call_loss", "baseline_non_call_loss", "loss_without_call")
    return [{"model": LABELS[n], **{k: scalar_of(cells, n, lambda r, k=k: r["validation"].get(k)).text() for k in keys}}
            for n in models_in(cells)]


def decision_rows(cells: Sequence[Results]) -> list[dict]:
    rows = []
    for name in models_in(cells):
        row = {"model": LABELS[name]}
        for bucket in BUCKETS:
            for kind in ("head_value" if bucket == "head" else "tail_value", "structural_value", "title_name", "other"):
                row[f"{bucket}: {kind}"] = scalar_of(cells, name, lambda r, b=bucket, k=kind: r["call_decisions"].get(b, {}).get("called", {}).get(k)).text(2)
        rows.append(row)
    return rows


def cell_rows(results: Results) -> list[dict]:
    """One cell at a glance (the evaluation asset's metadata): precision and leakage per model."""
    rows = []
    for name, r in results.items():
        row = {"model": name}
        for bucket in BUCKETS:
            for run in RUNS:
                p = r["generations"][bucket].get(run, {}).get("precision")
                row[f"{bucket} {run}"] = "–" if p is None else round(p, 3)
            row[f"leakage {bucket}"] = round(r["leakage"].get(bucket, {}).get("leakage", float("nan")), 3)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- figures


def _errorbar(ax, x: Estimate, y: Estimate, **kwargs) -> None:
    if x.mean is None or y.mean is None:
        return
    ax.errorbar(x.mean, y.mean, xerr=[[x.mean - x.low], [x.high - x.mean]], yerr=[[y.mean - y.low], [y.high - y.mean]],
                capsize=2, **kwargs)


def figure2(cells: Sequence[Results], names: Sequence[str], path: Path, title: str) -> Path:
    """Precision in the cascade with each partner (y) against leakage without calls (x), head and
    tail, means with their 95% intervals."""
    fig = Figure(figsize=(12, 8), layout="constrained")
    axes = fig.subplots(2, 2, sharey=True)
    for row, run in enumerate(PARTNER_RUNS):
        for col, bucket in enumerate(BUCKETS):
            ax = axes[row, col]
            for k, name in enumerate(names):
                x, y = leakage_of(cells, name, bucket), precision_of(cells, name, bucket, run)
                _errorbar(ax, x, y, fmt="o", color=f"C{k}", label=LABELS[name] if row == col == 0 else None)
                if x.mean is not None and y.mean is not None:
                    ax.annotate(LABELS[name], (x.mean, y.mean), fontsize=7, xytext=(4, 4), textcoords="offset points")
            ax.set_title(f"{bucket} people, partner `{run}`")
            ax.set_xlabel("fact leakage (QA, <CALL> at -inf)")
            ax.set_ylabel("factual precision of the cascade's biographies")
            ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncol=5, fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def figure5(cells: Sequence[Results], path: Path) -> Path:
    """Call and non-call validation losses of each calling model and of the matched baseline."""
    names = [n for n in models_in(cells) if n not in ("baseline", REFERENCE)]
    fig = Figure(figsize=(12, 4), layout="constrained")
    for ax, key in zip(fig.subplots(1, 2), ("call_loss", "non_call_loss")):
        for offset, (prefix, label) in ((-0.2, ("", "model")), (0.2, ("baseline_", "matched baseline"))):
            est = [scalar_of(cells, n, lambda r, k=prefix + key: r["validation"].get(k)) for n in names]
            means = [e.mean or 0 for e in est]
            err = [[(e.mean or 0) - (e.low if e.low is not None else e.mean or 0) for e in est],
                   [(e.high if e.high is not None else e.mean or 0) - (e.mean or 0) for e in est]]
            ax.bar(np.arange(len(names)) + offset, means, width=0.4, yerr=err, capsize=2, label=label)
        ax.set_xticks(np.arange(len(names)), [LABELS[n] for n in names], rotation=25, fontsize=8, ha="right")
        ax.set_title(key.replace("_", " "))
        ax.set_ylabel("nats per token")
        ax.legend(fontsize=8)
    fig.suptitle("Figure 5 analogue: validation losses on each model's call mask C_M (left) and its complement (right)")
    return save_figure(fig, path)


def probe_figure(results: Results) -> Figure:
    """One cell's training probe: per method, the share of each kind of token its rule calls
    (solid) and the share of the previous probe's calls called again (dashed)."""
    names = [n for n in MODELS if n in results and results[n].get("probe")]
    fig = Figure(figsize=(14, 2.6 * max(1, (len(names) + 2) // 3)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(max(1, (len(names) + 2) // 3), 3, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        rows = results[name]["probe"]
        steps = [r["step"] for r in rows]
        for k, kind in enumerate(PROBE_KINDS):
            ax.plot(steps, [r["rule"].get(kind) for r in rows], color=f"C{k}", label=kind)
        ax.plot(steps, [(r.get("rule_overlap") or {}).get("recalled") for r in rows], "k--", label="recalled")
        ax.set_title(LABELS[name], fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    if names:
        axes[0].legend(fontsize=7)
    fig.suptitle("Training probe: share of each kind in the rule's call mask; dashed: previous calls called again")
    return fig


def probe_rows(cells: Sequence[Results]) -> list[dict]:
    """Per method: the rule's share of head, tail and structural values over the last probes, and
    the first step from which at least 90% of the previous probe's calls are called again at every
    later probe (the choice frozen), over seeds."""
    rows = []
    for name in [n for n in models_in(cells) if n != REFERENCE]:
        probes = [c[name].get("probe") or [] for c in cells if name in c]
        if not any(probes):
            continue
        row = {"method": LABELS[name]}
        for kind in ("head_value", "tail_value", "structural_value"):
            row[f"{kind} called (last 3 probes)"] = bootstrap([[last_probes(p, lambda r, k=kind: r["rule"].get(k))] for p in probes if p]).text(2)
        row["recalled (last 3 probes)"] = bootstrap(
            [[last_probes(p, lambda r: (r.get("rule_overlap") or {}).get("recalled"))] for p in probes if p]).text(2)
        frozen = [frozen_from(p) for p in probes if p]
        row["frozen from step (per seed)"] = ", ".join("never" if f is None else str(f) for f in frozen)
        rows.append(row)
    return rows


def last_probes(probe: list[dict], value: Callable[[dict], float | None], n: int = 3) -> float:
    """The mean of `value` over the last `n` probes that have one; NaN when none has."""
    values = [v for v in (value(r) for r in probe[-n:]) if v is not None]
    return float(np.mean(values)) if values else np.nan


def frozen_from(probe: list[dict], level: float = 0.9, at_least: int = 3) -> int | None:
    """The first probe step from which every later probe re-calls at least `level` of the
    previous probe's calls, over at least `at_least` probes; None otherwise (not frozen, or only
    at the very end)."""
    start, run = None, 0
    for row in probe:
        value = (row.get("rule_overlap") or {}).get("recalled")
        if value is not None and value >= level:
            start, run = (row["step"] if start is None else start), run + 1
        else:
            start, run = None, 0
    return start if run >= at_least else None


# ---------------------------------------------------------------- acceptability (section 3)


def acceptability_units(cell_dir: Path, name: str) -> dict[str, np.ndarray] | None:
    path = cell_dir / "evaluation" / f"{name}-acceptability" / TABLE_FILE
    if not path.exists():
        return None
    t = pq.read_table(path, columns=["loss", "correct", "acceptable", "token_class"]).to_pydict()
    return {k: np.asarray([np.nan if v is None else v for v in t[k]], dtype=np.float64) for k in t}


def is_fact(u: dict[str, np.ndarray]) -> np.ndarray:
    return u["token_class"] == FACT


def is_non_fact(u: dict[str, np.ndarray]) -> np.ndarray:
    return (u["token_class"] == GRAMMATICAL) | (u["token_class"] == OTHER)


def in_band(units: Sequence[dict[str, np.ndarray]], member: Callable[[dict[str, np.ndarray]], np.ndarray], metric: str,
            low: float = -np.inf, high: float = np.inf) -> list[np.ndarray]:
    """Per seed, `metric` of the member tokens whose loss lies in [low, high), NaN elsewhere."""
    return [np.where(member(u) & (u["loss"] >= low) & (u["loss"] < high), u[metric], np.nan) for u in units]


def acceptability_gap(units: Sequence[dict[str, np.ndarray]]) -> Estimate:
    """Acceptability at or above HIGH_LOSS nats: facts minus non-facts (the paper: lower)."""
    return difference(in_band(units, is_fact, "acceptable", HIGH_LOSS), in_band(units, is_non_fact, "acceptable", HIGH_LOSS))


def pooled_figure3(cells: Sequence[Cell], name: str, path: Path) -> list[str]:
    """The Figure 3 analogue pooled over seeds, and the paper's two observations tested: loss
    predicts accuracy for facts and non-facts (accuracy below LOW_LOSS minus at or above
    HIGH_LOSS), and at high loss facts are less often acceptable than non-facts."""
    units = [u for u in (acceptability_units(c.root, name) for c in cells) if u is not None]
    if not units:
        return ["(no acceptability table)"]
    groups = {"facts": is_fact, "non-facts": is_non_fact}
    edges = [0, 0.5, 1, 2, 3, 4, 6, 8, np.inf]
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for k, (group, member) in enumerate(groups.items()):
        for ax, metric in zip(axes, ("correct", "acceptable")):
            means, lows, highs, counts = [], [], [], []
            for lo, hi in zip(edges, edges[1:]):
                est = bootstrap(in_band(units, member, metric, lo, hi), draws=2000)
                means.append(np.nan if est.mean is None else est.mean)
                lows.append(np.nan if est.low is None else est.low)
                highs.append(np.nan if est.high is None else est.high)
                counts.append(est.units)
            x = np.arange(len(means)) + (k - 0.5) * 0.15
            ax.errorbar(x, means, yerr=[np.subtract(means, lows), np.subtract(highs, means)], fmt="o-", capsize=2,
                        color=("tab:red", "tab:blue")[k], label=f"{group} (tokens per bin: {', '.join(map(str, counts))})")
    labels = [f"[{lo:g}, {hi:g})" for lo, hi in zip(edges, edges[1:])]
    for ax, metric in zip(axes, ("accuracy", "acceptability")):
        ax.set_xticks(np.arange(len(labels)), labels, rotation=30, fontsize=8)
        ax.set_xlabel("loss on the true token (nats)")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"Figure 3 analogue: {LABELS[name]}, validation batch, exact judge, {len(units)} seeds (95% intervals)")
    save_figure(fig, path)
    lines = []
    for group, member in groups.items():
        e = difference(in_band(units, member, "correct", high=LOW_LOSS), in_band(units, member, "correct", HIGH_LOSS))
        lines.append(f"- {group}: accuracy below {LOW_LOSS:g} nats minus at or above {HIGH_LOSS:g} nats {e.text()}: "
                     f"loss {'predicts accuracy' if e.verdict() == 'higher' else 'does not measurably predict accuracy'}.")
    e = acceptability_gap(units)
    lines.append(f"- at or above {HIGH_LOSS:g} nats, acceptability of facts minus non-facts {e.text()}: "
                 f"**{e.verdict('facts more acceptable', 'facts less acceptable')}** (the paper: less).")
    for group, member in groups.items():
        acc = bootstrap(in_band(units, member, "acceptable", HIGH_LOSS))
        cor = bootstrap(in_band(units, member, "correct", HIGH_LOSS))
        lines.append(f"- {group} at or above {HIGH_LOSS:g} nats: accuracy {cor.text()}, acceptability {acc.text()} ({acc.units} tokens).")
    return [f"![Figure 3 analogue]({path.name})", "\n".join(lines)]


# ---------------------------------------------------------------- the reports


def setup_lines(cells: Sequence[Cell], results: Sequence[Results]) -> list[str]:
    scenario = cells[0].scenario
    regimes = [read_json(c.path("regime.json")) for c in cells if c.path("regime.json").exists()]
    r = bootstrap([[g["R"]] for g in regimes])
    r_values = bootstrap([[g["R_values"]] for g in regimes])
    any_cell = next(iter(results))
    params = {n: res["checkpoint"].get("num_params") for n, res in any_cell.items()}
    steps = {n: res["checkpoint"].get("step") for n, res in any_cell.items()}
    return [
        f"Scenario `{scenario.name}` ({scenario.description}): world `{scenario.world.source()}` at seeds "
        f"{', '.join(str(c.seed) for c in cells)} (each seed draws the world, the initialization and the data order).",
        f"Regime: R = {r.text(2)} (labelled facts the small model cannot learn, tail values and title names, over the 15% "
        f"call quota; values only {r_values.text(2)}; the regime in docs/synthetic.md). Train tokens per seed: "
        f"{', '.join(str(g['tokens']) for g in regimes)}; spaCy fact fraction {bootstrap([[g['fact_fraction']] for g in regimes]).text(3)}.",
        f"Parameters: small models {params.get('baseline')}, partner {params.get(REFERENCE)}. Steps: "
        + ", ".join(f"{LABELS[n]} {s}" for n, s in steps.items()) + ".",
    ]


def write_report(cells: Sequence[Cell], out: Path, log: Callable[[str], None] = print) -> Path:
    """The scenario's report (module docstring) in `out/report.md`, with its figures."""
    out.mkdir(parents=True, exist_ok=True)
    results = [load_cell(c) for c in cells]
    names = [n for n in models_in(results) if n != REFERENCE]
    fig2 = figure2(results, names, out / "figure2_precision_vs_leakage.png",
                   "Figure 2 analogue: every method of Table 5, means and 95% intervals over seeds and people")
    fig6 = figure2(results, [n for n in ABLATIONS if n in names], out / "figure6_ablations.png",
                   "Figure 6 analogue: LaCy's ablations, means and 95% intervals")
    fig5 = figure5(results, out / "figure5_call_losses.png")
    save_figure(probe_figure(results[0]), out / "probe_seed0.png")
    sections = [
        f"# Synthetic-biography testbed: `{cells[0].scenario.name}`, {len(cells)} seeds",
        *setup_lines(cells, results),
        "Every number: mean over seeds [95% interval: bootstrap over seeds, and over the people or questions within each "
        "seed]. A difference is called higher or lower only when its interval excludes 0; otherwise no measured difference.",
        "## The paper's claims, measured",
        "\n".join(claims(results)),
        "## Factual precision and leakage (Figure 2 analogue)",
        "Precision: per biography, supported / stated attribute values (`evaluation.testbed.exact`), biographies stating "
        "none left out; `no_call`: `<CALL>` at -inf; `oracle`: the cascade with the oracle partner (the upper bound); "
        "`partner`: with the trained partner reading the person's record. Leakage: share of attribute questions whose answer "
        "the model writes with `<CALL>` at -inf (lower = fewer facts in the weights).",
        markdown_table(precision_rows(results)),
        f"![Figure 2 analogue]({fig2.name})",
        f"![Figure 6 analogue]({fig6.name})",
        "### LaCy against each method (paired by person or question)",
        *[markdown_table(claim_rows(results, other)) for other in models_in(results) if other not in ("lacy", REFERENCE)],
        "## Calls in the cascade",
        "Realized call rate at the equal budget (22%); declined: calls where the partner answered nothing (the oracle: no value "
        "due); rejected: an answer our vocabulary cannot write. Both fall back to the small model's own token.",
        markdown_table(call_rows(results)),
        "## The partner",
        "Attribute accuracy on the same questions: the partner with the person's record (how the cascade uses it), and every "
        "model alone (3-shot QA, `<CALL>` at -inf: a small model's row is its leakage).",
        markdown_table(partner_rows(results)),
        "## Validation losses (Figure 5 analogue)",
        markdown_table(loss_rows(results)),
        f"![Figure 5 analogue]({fig5.name})",
        "## Call decisions by token kind",
        "On train documents of head and tail people: the share of each kind of token in the model's A.4.3 call mask (15% of "
        "the tokens).",
        markdown_table(decision_rows(results)),
        "## The mechanism: what each rule calls while training",
        "The training probe (`trainer.probe`): 16 head and 16 tail train documents; at every logging step the share of each "
        "kind of token in the method's rule mask, and the share of the previous probe's calls called again.",
        markdown_table(probe_rows(results)),
        "![training probe, seed 0](probe_seed0.png)",
        "## Loss and acceptability (section 3, Figure 3 analogue)",
        "The baseline on the fixed validation batch; the exact judge (`evaluation.testbed.judge`): a proposed token is "
        "acceptable when the text so far plus the token is a prefix of some true biography of the person.",
        *pooled_figure3(cells, "baseline", out / "figure3_acceptability.png"),
    ]
    path = out / "report.md"
    path.write_text("\n\n".join(sections) + "\n")
    log(f"report written: {path}")
    return path


def write_sweep_report(storage_root: Path, out: Path, log: Callable[[str], None] = print) -> Path:
    """The scenarios side by side: LaCy minus the baseline in precision with each partner (head
    and tail) and in tail leakage, with intervals, against the training length and the world's
    size (and its R)."""
    out.mkdir(parents=True, exist_ok=True)
    points = []
    for name, scenario in SWEEP.items():
        cells = cells_of(storage_root, name)
        if not cells:
            continue
        results = [load_cell(c) for c in cells]
        regimes = [read_json(c.path("regime.json")) for c in cells if c.path("regime.json").exists()]
        point = {"scenario": name, "steps": scenario.steps_of("baseline"), "people": scenario.world.people, "seeds": len(cells),
                 "R": bootstrap([[g["R"]] for g in regimes])}
        for bucket in BUCKETS:
            for run in PARTNER_RUNS:
                point[f"precision {bucket} {run}"] = paired(results, "lacy", "baseline", lambda r, b=bucket, u=run: precision_units(r, b, u))
        point["leakage tail"] = paired(results, "lacy", "baseline", lambda r: leakage_units(r, "tail"))
        units = [u for u in (acceptability_units(c.root, "baseline") for c in cells) if u is not None]
        point["acceptability gap"] = acceptability_gap(units) if units else Estimate(None, None, None, 0, 0)
        points.append(point)
    keys = [f"precision {b} {r}" for b in BUCKETS for r in PARTNER_RUNS] + ["leakage tail"]
    fig = Figure(figsize=(13, 8), layout="constrained")
    axes = fig.subplots(2, 2)
    axis_of = {"steps": ("people", "baseline steps (training length)"), "people": ("steps", "people in the world")}
    for col, (xkey, (fixed, xlabel)) in enumerate(axis_of.items()):
        default = SWEEP["default"]
        line = sorted([p for p in points if p[fixed] == (default.world.people if fixed == "people" else default.steps_of("baseline"))],
                      key=lambda p: p[xkey])
        for row, group in enumerate((keys[:4], keys[4:])):
            ax = axes[row, col]
            for k, key in enumerate(group):
                xs = [p[xkey] for p in line if p[key].mean is not None]
                ms = [p[key].mean for p in line if p[key].mean is not None]
                lo = [p[key].mean - p[key].low for p in line if p[key].mean is not None]
                hi = [p[key].high - p[key].mean for p in line if p[key].mean is not None]
                ax.errorbar(xs, ms, yerr=[lo, hi], fmt="o-", capsize=3, color=f"C{k}", label=f"LaCy - baseline: {key}")
            ax.axhline(0, color="gray", lw=0.8)
            ax.set_xlabel(xlabel)
            ax.set_xscale("log", base=2)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("The sweep: LaCy minus the baseline (95% intervals over seeds and people or questions)")
    save_figure(fig, out / "sweep.png")
    rows = [{"scenario": p["scenario"], "baseline steps": p["steps"], "people": p["people"], "seeds": p["seeds"], "R": p["R"].text(2),
             **{f"LaCy - baseline, {k}": f"{p[k].text()} ({p[k].verdict()})" for k in keys},
             f"baseline: acceptability at >= {HIGH_LOSS:g} nats, facts - non-facts": p["acceptability gap"].text()} for p in points]
    text = "\n\n".join(["# The testbed's sweep", "Each point: a scenario's seeds; LaCy minus the baseline, paired by person "
                        "(precision) or question (leakage), mean [95% interval].", markdown_table(rows), "![sweep](sweep.png)"])
    path = out / "report.md"
    path.write_text(text + "\n")
    log(f"sweep report written: {path}")
    return path


