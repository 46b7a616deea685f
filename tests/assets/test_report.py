"""The comparison report asset: which models it reads, and the report it writes from fixed
result files: the sections that moved to `evaluation.report` unchanged (the golden file
was written by the report before the move, from the same results), and the new Figure 3
section between Table 1 and Table 2."""

import json
import os
import re

from dagster import materialize

from assets.evaluation import EVALUATIONS
from assets.report import collect, report_asset
from assets.resources import LacyStorage
from tests.assets.report_results import write_results

GOLDEN = os.path.join(os.path.dirname(__file__), "data", "comparison_report.md")


def _checkpoint(root, method: str, run: str, objective: str | None, mtime: int) -> str:
    path = root / "models" / method / run / "step-00000010"
    path.mkdir(parents=True)
    (path / "lacy.json").write_text(json.dumps({"call_objective": objective}))
    os.utime(path, (mtime, mtime))
    return str(path.relative_to(root / "models"))


def test_collect_shows_the_latest_model_and_the_newest_run_of_another_objective(tmp_path):
    full = _checkpoint(tmp_path, "lacy", "run-full", "full", 300)
    _checkpoint(tmp_path, "lacy", "run-old", "renormalized", 100)
    renormalized = _checkpoint(tmp_path, "lacy", "run-new", "renormalized", 200)
    baseline = _checkpoint(tmp_path, "baseline", "run-b", None, 100)
    for method, key in (("lacy", full), ("baseline", baseline)):
        (tmp_path / "models" / method / "latest.json").write_text(
            json.dumps({"run_dir": f"models/{key.rsplit('/', 1)[0]}", "checkpoint": f"models/{key}"}))
    rows = collect(LacyStorage(root=str(tmp_path)), ["nlu"])
    assert {label: (r["method"], r["partition"], r["nlu"]) for label, r in rows.items()} == {
        "Baseline": ("baseline", baseline, None), "LaCy": ("lacy", full, None), "LaCy (renormalized)": ("lacy", renormalized, None)}


def test_the_report_from_fixed_results_is_the_one_before_the_move_plus_figure_3(tmp_path):
    write_results(tmp_path)
    storage = LacyStorage(root=str(tmp_path))
    result = materialize([report_asset(EVALUATIONS)], resources={"storage": storage})
    assert result.success
    report = re.sub(r"Code `[^`]*`", "Code `COMMIT`", storage.path("report", "report.md").read_text())
    figure3 = re.search(r"## Figure 3: accuracy and acceptability by loss bin\n.*?(?=## Table 2)", report, re.DOTALL).group()
    assert report.replace(figure3, "") == open(GOLDEN).read()
    assert report.index("## Table 1") < report.index("## Figure 3") < report.index("## Table 2")
    assert [line for line in figure3.splitlines() if line.startswith("### ")] == ["### Baseline", "### Rho-1", "### LaCy"]
    assert "| [2, inf) | 0 |  |  | 5 | 0.35 | 0.77 | 0 |" in figure3  # no fact token in the last bin: no accuracy
    figures = sorted(p.name for p in storage.path("report").glob("*.png"))
    assert figures == ["acceptability_baseline.png", "acceptability_lacy.png", "acceptability_rho_1.png", "call_aucs.png",
                       "call_losses.png", "factscore_vs_leakage.png"]
    (event,) = result.get_asset_materialization_events()
    assert {"summary", "call_decision", "table_1_nlu", "table_2_cost", "figure_3_acceptability",
            "figure_3_acceptability_lacy"} <= set(event.materialization.metadata)
