"""Paired per-round ratios and their summary: each benchmark times its variants in the same
rounds and reports the median ratio with its quartiles, range and rounds above 1, not one
best time (a single fast or slow round on this shared machine moves a minimum, not a median)."""

import statistics


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def paired_ratios(times: dict[str, list[float]], a: str, b: str) -> list[float]:
    """a's time / b's time in each round (a ratio above 1: b is faster)."""
    return [x / y for x, y in zip(times[a], times[b])]


def describe(ratios: list[float]) -> str:
    q1, q2, q3 = quartiles(ratios)
    return f"{q2:.3f} (quartiles {q1:.3f}-{q3:.3f}, range {min(ratios):.3f}-{max(ratios):.3f}, above 1 in {sum(r > 1 for r in ratios)}/{len(ratios)})"
