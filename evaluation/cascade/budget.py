"""The equal call budget of section 5.1 and A.5."""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence

import numpy as np


class CallBudget:
    """Equal call budgets (section 5.1, A.5: "thresholding the <CALL> logit based on a running
    quantile that adjusts based on the number of <CALL>s generated so far"): decides whether
    each generated position calls, so that the realized rate over *all* generated positions of
    an evaluation (every generation shares one controller) ends at `budget`, while the calls
    go to the highest `<CALL>` logits.

    Decisions come in steps: the positions of all sequences decoded together (`decide_step`;
    `decide` is a step of one position). Before a step, n positions were decided and c of
    them called, and W holds the last `window` logits of earlier steps (a window, because the
    logits drift during generation, A.5). The step's level is

        q = clip(budget + (budget * n - c) / horizon, 0, 1)

    (integral feedback on the count of calls, so it cannot settle off target), and a logit z
    of the step's logits S calls iff, in the pool P = W + S (z itself included),

        #{p in P : p > z} + #{p in P : p = z} / 2  <=  q |P|

    i.e. the step calls those of its logits that rank in the top q of the pool, ties sharing
    their ranks (a flat stream calls when q >= 1/2, which the feedback makes happen at the
    budget's rate). Then W takes the step's logits, and n and c its positions and calls.

    Why this does not ration calls per step: all logits of a step face one level, and the
    pool holds many steps' logits, so when every sequence is at a high logit at once (in
    lockstep, at the same place of a biography) all of them call; the count moves the level
    only between steps, by at most max(budget, 1 - budget) * |S| / horizon, and `lockstep`
    sets the horizon to 8 steps' worth of positions. (A level updated after each position,
    with a horizon shorter than a step, spent the budget within the step on the first
    sequences of the batch.)

    Bound, whatever the logits: q = 0 calls nothing (z ranks at least 1/2) and q = 1 calls
    everything, so c - budget * n stays below budget * horizon + |S| and above
    -((1 - budget) * horizon + |S|): the rate is within (max(budget, 1 - budget) * horizon +
    |S|) / n of the budget, and a stream that drifts (each new logit above or below all of W)
    settles there. No other correction is applied.
    """

    def __init__(self, budget: float = 0.22, window: int = 1024, horizon: float = 8.0):
        if not 0.0 <= budget <= 1.0:
            raise ValueError(f"call budget {budget} is not in [0, 1]")
        self.budget, self.horizon = budget, horizon
        self.window = window
        self.recent: deque[float] = deque()  # W in arrival order
        self.sorted: list[float] = []  # W sorted
        self.positions = self.calls = 0  # n and c: positions decided and calls made so far

    @classmethod
    def lockstep(cls, budget: float, streams: int) -> CallBudget:
        """For `streams` sequences decoded in lockstep: a horizon of 8 steps' worth of
        positions, and a window of at least 32 steps (and 1,024 positions)."""
        return cls(budget, window=max(1024, 32 * streams), horizon=8.0 * streams)

    @property
    def level(self) -> float:
        return min(max(self.budget + (self.budget * self.positions - self.calls) / self.horizon, 0.0), 1.0)

    @property
    def rate(self) -> float:
        return self.calls / max(self.positions, 1)

    def decide_step(self, call_logits: Sequence[float] | np.ndarray) -> np.ndarray:
        """Whether each of one step's logits calls (a bool array in their order)."""
        z = np.asarray(call_logits, dtype=np.float64).ravel()
        held = self.sorted
        right = np.array([bisect.bisect_right(held, v) for v in z.tolist()], dtype=np.int64)
        left = np.array([bisect.bisect_left(held, v) for v in z.tolist()], dtype=np.int64)
        above = len(held) - right + (z[None, :] > z[:, None]).sum(1)
        equal = right - left + (z[None, :] == z[:, None]).sum(1)
        call = above + equal / 2 <= self.level * (len(held) + len(z))
        for v in z.tolist():
            self._remember(v)
        self.positions, self.calls = self.positions + len(z), self.calls + int(call.sum())
        return call

    def decide(self, call_logit: float) -> bool:
        return bool(self.decide_step([call_logit])[0])

    def _remember(self, z: float) -> None:
        """W takes `z` and drops its oldest logit beyond `window`."""
        if len(self.recent) == self.window:
            self.sorted.pop(bisect.bisect_left(self.sorted, self.recent.popleft()))
        self.recent.append(z)
        bisect.insort(self.sorted, z)
