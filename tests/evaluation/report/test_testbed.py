"""The testbed report's units and the freeze rule, on small cases worked by hand."""

import numpy as np

from evaluation.report.testbed import frozen_from, leakage_units, precision_units


def test_precision_units_leave_out_biographies_that_state_nothing():
    result = {"generations": {"head": {"oracle": {"stated_by_generation": [4, 0, 2], "supported_by_generation": [3, 0, 2]}}}}
    units = precision_units(result, "head", "oracle")
    assert units[0] == 0.75 and np.isnan(units[1]) and units[2] == 1.0
    assert precision_units(result, "head", "partner").size == 0


def test_leakage_units_mark_unscored_questions():
    units = leakage_units({"leakage": {"tail": {"contained_by_question": [1, None, 0]}}}, "tail")
    assert units[0] == 1 and np.isnan(units[1]) and units[2] == 0


def probe(recalled):
    return [{"step": 10 * (i + 1), "rule_overlap": {"recalled": r}} for i, r in enumerate(recalled)]


def test_frozen_from_by_hand():
    assert frozen_from(probe([None, 0.5, 0.95, 0.97, 0.99])) == 30  # from step 30 on, >= 0.9 at three probes
    assert frozen_from(probe([None, 0.95, 0.5, 0.95, 0.99])) is None  # the last stretch is two probes
    assert frozen_from(probe([None, 0.95, 0.96, 0.97, 0.5])) is None  # thawed at the end
    assert frozen_from(probe([None, 0.1, 0.2])) is None
