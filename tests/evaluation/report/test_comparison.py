"""The comparison report's builders: the baseline twice, the call-decision table and its
figure, Figure 2/6's label placement, Table 2 from the measured costs."""

import pytest

from evaluation.report.comparison import call_aucs, call_decision_table, cost_table, spread_labels, summary_table


def test_close_labels_pushed_apart_far_ones_kept():
    xs, ys = [0.0, 0.0, 0.5, 0.0], [0.030, 0.031, 0.0305, 0.060]
    # by height: 0.030 stays; 0.0305 is far right; 0.031 is 0.001 above 0.030 -> 0.032;
    # 0.060 is well clear.
    assert spread_labels(xs, ys, min_gap=0.002, x_near=0.01) == pytest.approx([0.030, 0.032, 0.0305, 0.060])


def test_chain_of_equal_points():
    assert spread_labels([0.0] * 3, [1.0] * 3, min_gap=0.1, x_near=0.01) == pytest.approx([1.0, 1.1, 1.2])


def _row(method: str, call_rates: dict, proxy: float, no_call_proxy: float | None = None) -> dict:
    factscore = {"fact_overlap_proxy": {"score": proxy}}
    if no_call_proxy is not None:
        factscore["no_call"] = {"fact_overlap_proxy": {"score": no_call_proxy}}
    return {
        "method": method,
        "partition": f"{method}/run/step-1",
        "validation_losses": {"call_loss": 5.0, "call_loss_without_call": 4.0, "non_call_loss": 3.0, "call_top_fraction": 0.5,
                              "mean_p_call_at_calls": 0.6, "mean_p_call_at_non_calls": 0.1, "call_auc_own_rule": 0.7,
                              "call_auc_facts": 0.65, "call_auc_hard_tokens": None,
                              "call_auc_notes": {"hard_tokens": "no matched baseline given"}},
        "cascade_generations": {"config": {"call_budget": 0.22},
                                "modes": {mode: {"summary": {"call_rate": r}} for mode, r in call_rates.items()}},
        "factscore": factscore,
        "fact_leakage": {"popqa": {"leakage": 0.1}, "bigbench_qa_wikidata": {"leakage": 0.3}},
        "nlu": None,
    }


ROWS = {
    "Baseline": _row("baseline", {"budgeted": 0.221, "native": 0.0, "no_call": 0.0}, proxy=0.4, no_call_proxy=0.3),
    "LaCy": _row("lacy", {"budgeted": 0.219, "native": 0.05}, proxy=0.5),
}


def test_baseline_appears_without_calls_and_at_the_budget():
    summary = summary_table(ROWS)
    assert [(r["model"], r["fact_overlap_proxy (not FactScore)"]) for r in summary] == [
        ("Baseline, without calls", 0.3),
        ("Baseline, untrained <CALL> logit at the 22% call budget", 0.4),
        ("LaCy", 0.5),
    ]
    assert all(r["fact leakage"] == pytest.approx(0.2) for r in summary)


def test_call_decision_table_and_figure(tmp_path):
    table = call_decision_table(ROWS)
    assert [r["model"] for r in table] == ["Baseline (untrained <CALL> logit)", "LaCy"]
    lacy = table[1]
    assert (lacy["call rate, budgeted"], lacy["call rate, native"]) == (0.219, 0.05)
    assert (lacy["AUC vs own rule"], lacy["AUC vs spaCy facts"], lacy["AUC vs hard tokens"]) == (0.7, 0.65, None)
    assert (lacy["call loss (p)"], lacy["call loss (p\\CALL)"]) == (5.0, 4.0)
    assert call_aucs(ROWS, tmp_path / "aucs.png") == tmp_path / "aucs.png" and (tmp_path / "aucs.png").read_bytes()[:4] == b"\x89PNG"
    assert call_aucs({}, tmp_path / "none.png") == "no method has validation results yet" and not (tmp_path / "none.png").exists()


def test_cost_table_by_hand():
    # 1e9 / 2500 tokens per s = 400,000 s = 111 h; 120 s per 1e6 tokens = 120,000 s per 1e9 = 33 h
    measured = cost_table({"tokens_per_s_per_core": 2500.0}, {"seconds": 120.0, "tokens": 1_000_000})
    assert [r["preprocessing here"] for r in measured] == [
        "none", "not run: LMLM's annotations are given", "33 h / 1B tokens (reference model scoring, this machine)",
        "111 h / 1B tokens, one CPU core"]
    assert [r["preprocessing here"] for r in cost_table(None, None)][2:] == ["materialize reference_losses", "run `make bench`"]
