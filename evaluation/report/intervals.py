"""Means and paired differences with 95% intervals, for reports that compare methods over
several seeds: a two-level bootstrap, over seeds and, within each drawn seed, over units
(the people whose biographies are scored, or the questions asked).

Data: one array per seed of per-unit values; NaN marks a unit without a value (a biography
that states no fact has no precision). A seed's estimate is the mean of its units' values
(NaN ignored); the estimate over seeds is the mean of the seeds' estimates, each seed weighing
the same. A paired difference is computed unit by unit within a seed: A and B hold the same
units in the same order (the same people prompted, the same questions), and a resample draws
the units once for both, so what the two methods share cancels.

The bootstrap: each of `draws` replicates draws k seeds with replacement out of the k, then,
independently for every drawn seed, its n units with replacement out of the n, and computes
the estimate over seeds of that resample; the interval is the 2.5th and 97.5th percentiles of
the replicates (numpy's linear interpolation). A mean (`bootstrap`) and an unpaired difference
resample only the units that have a value; a paired difference resamples every unit, and its
replicates whose every drawn unit is NaN in some seed are dropped and counted. With one seed it is the ordinary bootstrap over units; with few
seeds the seed level has few distinct resamples (3 seeds: 10), so the interval is coarse,
which is what few seeds can tell.

Two groups of different units of each seed (fact and non-fact tokens) are compared with
`difference`, which resamples each group's units independently within a drawn seed.

A comparison is worded by its interval only (`verdict`): "higher" where the interval of A - B
lies above 0, "lower" where it lies below, "no measured difference" otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

DRAWS = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    mean: float | None  # the estimate over seeds (None: no seed has a value)
    low: float | None  # the 95% interval
    high: float | None
    seeds: int  # seeds with a value
    units: int  # units with a value, all seeds together
    dropped: int = 0  # bootstrap replicates without a value

    def verdict(self, higher: str = "higher", lower: str = "lower") -> str:
        """The words of a difference: by its interval alone."""
        if self.low is None or self.high is None:
            return "not measured"
        if self.low > 0:
            return higher
        if self.high < 0:
            return lower
        return "no measured difference"

    def text(self, digits: int = 3) -> str:
        """`0.412 [0.371, 0.450]`, or `–` without a value."""
        if self.mean is None:
            return "–"
        interval = "" if self.low is None else f" [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{self.mean:.{digits}f}{interval}"

    def to_dict(self) -> dict:
        return asdict(self)


def _as_arrays(values: Sequence[Sequence[float]]) -> list[np.ndarray]:
    return [np.asarray(v, dtype=np.float64).reshape(-1) for v in values]


def _seed_mean(v: np.ndarray) -> float:
    return float(np.nanmean(v)) if np.isfinite(v).any() else np.nan


def bootstrap(values: Sequence[Sequence[float]], draws: int = DRAWS, seed: int = 0, level: float = LEVEL) -> Estimate:
    """The mean over seeds of per-seed means of `values[s]` (NaN ignored), with its interval
    (the difference to zero)."""
    arrays = _as_arrays(values)
    return difference(arrays, [np.zeros(1) for _ in arrays], draws, seed, level)


def paired_difference(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], draws: int = DRAWS, seed: int = 0,
                      level: float = LEVEL) -> Estimate:
    """A - B over seeds, paired unit by unit within each seed (module docstring). A unit
    counts in a seed's difference of means as it counts in each mean: a unit without A's
    value still counts in B's mean. The resample draws the units once for both."""
    a_arrays, b_arrays = _as_arrays(a), _as_arrays(b)
    if len(a_arrays) != len(b_arrays):
        raise ValueError(f"paired difference: {len(a_arrays)} seeds of A, {len(b_arrays)} of B")
    for s, (x, y) in enumerate(zip(a_arrays, b_arrays)):
        if x.shape != y.shape:
            raise ValueError(f"paired difference: seed {s} has {x.size} units of A and {y.size} of B (the same units are needed)")
    return _two_level(a_arrays, b_arrays, paired=True, draws=draws, seed=seed, level=level)


def difference(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], draws: int = DRAWS, seed: int = 0,
               level: float = LEVEL) -> Estimate:
    """A - B over seeds where A and B are different units of each seed (e.g. fact and non-fact
    tokens): within a drawn seed, A's and B's units are resampled independently."""
    a_arrays, b_arrays = _as_arrays(a), _as_arrays(b)
    if len(a_arrays) != len(b_arrays):
        raise ValueError(f"difference: {len(a_arrays)} seeds of A, {len(b_arrays)} of B")
    return _two_level(a_arrays, b_arrays, paired=False, draws=draws, seed=seed, level=level)


def _two_level(a_arrays: list[np.ndarray], b_arrays: list[np.ndarray], paired: bool, draws: int, seed: int,
               level: float) -> Estimate:
    if not paired:  # independent groups: a unit without a value takes no part in its group's resample
        a_arrays, b_arrays = [x[np.isfinite(x)] for x in a_arrays], [y[np.isfinite(y)] for y in b_arrays]
    pairs = [(x, y) for x, y in zip(a_arrays, b_arrays) if np.isfinite(x).any() and np.isfinite(y).any()]
    if not pairs:
        return Estimate(None, None, None, 0, 0)
    mean = float(np.mean([_seed_mean(x) - _seed_mean(y) for x, y in pairs]))
    units = int(sum((np.isfinite(x) & np.isfinite(y)).sum() if paired else np.isfinite(x).sum() for x, y in pairs))
    rng = np.random.default_rng(seed)
    k = len(pairs)
    chosen = rng.integers(0, k, size=(draws, k))  # the seeds of each replicate, slot by slot
    slot = np.empty((draws, k))
    for j in range(k):
        for s, (x, y) in enumerate(pairs):
            rows = np.flatnonzero(chosen[:, j] == s)
            if len(rows) == 0:
                continue
            idx = rng.integers(0, len(x), size=(len(rows), len(x)))
            idy = idx if paired else rng.integers(0, len(y), size=(len(rows), len(y)))
            slot[rows, j] = _nanmean_rows(x[idx]) - _nanmean_rows(y[idy])
    replicate = slot.mean(axis=1)
    kept = replicate[np.isfinite(replicate)]
    tail = (1 - level) / 2 * 100
    low, high = (float(q) for q in np.percentile(kept, [tail, 100 - tail]))
    return Estimate(mean, low, high, k, units, draws - len(kept))


def _nanmean_rows(m: np.ndarray) -> np.ndarray:
    finite = np.isfinite(m)
    counts = finite.sum(axis=1)
    sums = np.where(finite, m, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
