"""Figure 2/6's label placement: labels of nearby points are pushed apart, far ones stay put."""

import pytest

from assets.report import spread_labels


def test_close_labels_pushed_apart_far_ones_kept():
    xs, ys = [0.0, 0.0, 0.5, 0.0], [0.030, 0.031, 0.0305, 0.060]
    # by height: 0.030 stays; 0.0305 is far right; 0.031 is 0.001 above 0.030 -> 0.032;
    # 0.060 is well clear.
    assert spread_labels(xs, ys, min_gap=0.002, x_near=0.01) == pytest.approx([0.030, 0.032, 0.0305, 0.060])


def test_chain_of_equal_points():
    assert spread_labels([0.0] * 3, [1.0] * 3, min_gap=0.1, x_near=0.01) == pytest.approx([1.0, 1.1, 1.2])
