"""Which cascades a checkpoint's evaluation runs: the budgeted one always, the configured
others, and for a model trained without calls also the one without calls."""

from assets.evaluation import CascadeGenerationsConfig, cascade_modes, mode_config


def test_baseline_also_runs_without_calls():
    config = CascadeGenerationsConfig()
    assert cascade_modes(config, "lacy") == ["budgeted", "native"]
    assert cascade_modes(config, "baseline") == ["budgeted", "native", "no_call"]
    assert cascade_modes(config, "reference") == ["budgeted", "native", "no_call"]  # `make evaluate` evaluates it too
    assert cascade_modes(CascadeGenerationsConfig(modes=["native"]), "lacy") == ["budgeted", "native"]


def test_mode_configs():
    config = CascadeGenerationsConfig(call_budget=0.3, max_new_tokens=12)
    budgeted, native, off = (mode_config(m, config) for m in ("budgeted", "native", "no_call"))
    assert (budgeted.call_mode, budgeted.call_budget, budgeted.calls, budgeted.max_new_tokens) == ("budgeted", 0.3, True, 12)
    assert native.call_mode == "native" and native.calls
    assert not off.calls
