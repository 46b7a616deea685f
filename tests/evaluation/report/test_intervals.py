"""The two-level bootstrap on cases whose bootstrap distribution is known by hand."""

import numpy as np
import pytest

from evaluation.report.intervals import Estimate, bootstrap, difference, paired_difference


def test_one_seed_two_units_by_hand():
    # resampling [0, 1] twice: mean 0 (1/4), 0.5 (1/2), 1 (1/4); the 2.5th and 97.5th
    # percentiles of that distribution are 0 and 1, the estimate 0.5
    e = bootstrap([[0.0, 1.0]], draws=4000)
    assert (e.mean, e.low, e.high, e.seeds, e.units) == (0.5, 0.0, 1.0, 1, 2)


def test_seeds_resampled_by_hand():
    # two seeds whose units agree: seed means 0 and 1; drawing 2 of the 2 seeds gives
    # {0,0} -> 0 (1/4), {0,1} -> 0.5 (1/2), {1,1} -> 1 (1/4): the interval is [0, 1]
    e = bootstrap([[0.0, 0.0, 0.0], [1.0, 1.0]], draws=4000)
    assert (e.mean, e.low, e.high, e.seeds, e.units) == (0.5, 0.0, 1.0, 2, 5)


def test_a_constant_paired_difference_has_a_point_interval():
    rng = np.random.default_rng(1)
    b = [rng.random(20), rng.random(30)]
    a = [x + 0.25 for x in b]  # every unit 0.25 higher: pairing cancels the units' spread
    e = paired_difference(a, b)
    assert e.mean == pytest.approx(0.25) and e.low == pytest.approx(0.25) and e.high == pytest.approx(0.25)
    assert e.verdict() == "higher"
    unpaired_spread = bootstrap(a).high - bootstrap(a).low
    assert unpaired_spread > 0.1  # the same data without pairing: a wide interval


def test_nan_units_are_left_out_of_their_mean():
    # [1, nan, 0] is the mean of [1, 0]: the same estimate and interval
    e, without = bootstrap([[1.0, np.nan, 0.0]], draws=2000), bootstrap([[1.0, 0.0]], draws=2000)
    assert (e.mean, e.low, e.high, e.units, e.dropped) == (without.mean, without.low, without.high, 2, 0) == (0.5, 0.0, 1.0, 2, 0)


def test_a_paired_replicate_without_values_is_dropped():
    # units [1, nan, 0] of A against B = 0: a replicate drawing the nan unit three times ((1/3)^3) has no value
    e = paired_difference([[1.0, np.nan, 0.0]], [[0.0, 0.0, 0.0]], draws=2000)
    assert e.mean == 0.5 and e.units == 2
    assert e.dropped == pytest.approx(2000 / 27, rel=0.35)


def test_verdict_words_follow_the_interval_only():
    assert Estimate(0.1, 0.02, 0.2, 3, 90).verdict() == "higher"
    assert Estimate(-0.1, -0.2, -0.01, 3, 90).verdict() == "lower"
    assert Estimate(0.1, -0.01, 0.2, 3, 90).verdict() == "no measured difference"
    assert Estimate(None, None, None, 0, 0).verdict() == "not measured"
    assert Estimate(0.1234, 0.1, 0.15, 3, 90).text() == "0.123 [0.100, 0.150]"


def test_paired_difference_needs_the_same_units():
    with pytest.raises(ValueError, match="seed 0 has 2 units of A and 3 of B"):
        paired_difference([[1.0, 2.0]], [[1.0, 2.0, 3.0]])


def test_unpaired_difference_by_hand():
    # one seed, A = [1, 1] (always 1) and B = [0, 1] resampled on its own: B's mean is 0, 0.5, 1
    # with 1/4, 1/2, 1/4, so A - B is 1, 0.5, 0: the interval is [0, 1] around 0.5
    e = difference([[1.0, 1.0]], [[0.0, 1.0]], draws=4000)
    assert (e.mean, e.low, e.high, e.units) == (0.5, 0.0, 1.0, 2)
