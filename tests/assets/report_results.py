"""Fixed result files of three methods' checkpoints under a storage root, as the evaluation
assets write them: what the comparison report is built from in the tests that pin it."""

from __future__ import annotations

import json
from pathlib import Path

KEYS = {"baseline": "baseline/run-b/step-00000010", "lacy": "lacy/run-l/step-00000010", "rho1": "rho1/run-r/step-00000010"}


def _validation(call: float, non_call: float, auc: float | None, baseline: bool) -> dict:
    result = {"call_loss": call, "call_loss_without_call": call - 0.5, "non_call_loss": non_call, "total_loss": non_call + 0.3,
              "call_fraction": 0.15, "call_top_fraction": 0.12, "mean_p_call_at_calls": 0.4, "mean_p_call_at_non_calls": 0.05,
              "call_auc_own_rule": auc, "call_auc_facts": 0.61, "call_auc_hard_tokens": 0.58 if baseline else None,
              "call_auc_notes": {} if baseline else {"hard_tokens": "no matched baseline given"}}
    if baseline:
        result |= {"baseline_call_loss": call + 0.7, "baseline_non_call_loss": non_call + 0.1}
    return result


def _cascade(rates: dict[str, float]) -> dict:
    return {"config": {"call_budget": 0.22}, "modes": {m: {"summary": {"call_rate": r}} for m, r in rates.items()}}


def _factscore(proxy: float, no_call: float | None = None, judged: float | None = None) -> dict:
    result = {"fact_overlap_proxy": {"score": proxy}}
    if judged is not None:
        result["factscore"] = {"score": judged}
    if no_call is not None:
        result["no_call"] = {"fact_overlap_proxy": {"score": no_call}}
    return result


def _leakage(popqa: float, bigbench: float) -> dict:
    return {"popqa": {"leakage": popqa}, "bigbench_qa_wikidata": {"leakage": bigbench}}


def _nlu(accs: tuple[float, float, float, float]) -> dict:
    return {"tasks": {t: {"acc": a} for t, a in zip(("arc_easy", "hellaswag", "piqa", "social_iqa"), accs)}}


def _acceptability(shift: float) -> dict:
    def group(tokens: int, acc: float | None, ok: float | None) -> dict:
        return {"tokens": tokens, "accuracy": acc, "acceptability": ok, "unparseable": 0}

    bins = [{"bin": f"[{k:g}, {k + 1:g})" if k < 2 else "[2, inf)", "low": float(k),
             "all": group(10 - k, 0.9 - 0.3 * k, 0.95 - 0.2 * k), "fact": group(3, 0.8 - 0.3 * k - shift, 0.9 - 0.3 * k),
             "non_fact": group(7 - k, 0.95 - 0.3 * k, 0.97 - 0.1 * k - shift)} for k in range(3)]
    bins[2]["fact"] = group(0, None, None)
    return {"judge": "a1:openai-chat:judge", "documents": 2, "judge_queries": 27, "bins": bins,
            "overall": {"all": group(27, 0.7, 0.8), "fact": group(6, 0.5, 0.6), "non_fact": group(21, 0.75, 0.85)}}


RESULTS = {
    "baseline": {"validation_losses": _validation(5.1, 3.2, None, baseline=False),
                 "cascade_generations": _cascade({"budgeted": 0.221, "native": 0.0, "no_call": 0.0}),
                 "factscore": _factscore(0.41, no_call=0.33), "fact_leakage": _leakage(0.12, 0.3),
                 "nlu": _nlu((0.41, 0.27, 0.6, 0.36)), "acceptability": _acceptability(0.0)},
    "lacy": {"validation_losses": _validation(4.2, 3.3, 0.71, baseline=True),
             "cascade_generations": _cascade({"budgeted": 0.219, "native": 0.05}),
             "factscore": _factscore(0.52), "fact_leakage": _leakage(0.08, 0.2),
             "nlu": _nlu((0.4, 0.28, 0.59, 0.35)), "acceptability": _acceptability(0.1)},
    "rho1": {"validation_losses": _validation(4.6, 3.4, 0.66, baseline=True), "fact_leakage": _leakage(0.1, 0.25),
             "acceptability": _acceptability(0.05)},
}


def write_results(root: Path) -> None:
    """Checkpoints (lacy.json), `latest.json` of each method, the evaluations' result files,
    the labeling benchmark, the reference scoring's manifest and the token shards' manifest."""
    for method, key in KEYS.items():
        checkpoint = root / "models" / key
        checkpoint.mkdir(parents=True)
        (checkpoint / "lacy.json").write_text(json.dumps({"method": method, "step": 10, "call_objective": None}))
        (root / "models" / method / "latest.json").write_text(
            json.dumps({"run_dir": f"models/{Path(key).parent}", "checkpoint": f"models/{key}"}))
        for name, result in RESULTS[method].items():
            path = root / "evaluation" / key / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({**result, "partition": key}))
    (root / "bench").mkdir()
    (root / "bench" / "labeling.json").write_text(json.dumps({"tokens_per_s_per_core": 2500.0}))
    (root / "reference_losses").mkdir()
    (root / "reference_losses" / "manifest.json").write_text(json.dumps({"seconds": 120.0, "tokens": 1_000_000}))
    (root / "token_shards").mkdir()
    (root / "token_shards" / "manifest.json").write_text(json.dumps({"fingerprint": "fixed-shards"}))
