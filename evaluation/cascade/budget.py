"""The equal call budget of section 5.1 and A.5."""

from __future__ import annotations

import bisect
from collections import deque


class CallBudget:
    """Equal call budgets (section 5.1, A.5): decides at each generated position whether to
    call, so that the realized rate over *all* generated positions of an evaluation (every
    generation shares one controller) stays at `budget`, while calls go where the `<CALL>`
    logit is relatively high.

    Running quantile: W holds the last `window` `<CALL>` logits seen (a window, because the
    logits drift during generation, A.5). The level adjusts to the realized rate by the
    deficit of calls so far (integral feedback on the count, so it cannot settle off target):

        d = budget * steps - calls,   q = clip(budget + d / horizon, 0, 1)

    A logit z calls iff its mid-rank among W and z lies in the top q:

        #{w in W : w > z} + (#{w in W : w = z} + 1) / 2  <=  q (|W| + 1)

    (ties share their ranks, so a flat stream calls when q >= 1/2, which the feedback makes
    happen at the budget's rate.) A stream that drifts up tops W at every step and calls
    until the surplus pushes q to 0; one that drifts down calls only when the deficit has
    raised q near 1; both settle within a bounded number of calls of the budget.

    Last resort (`guarded`): when the decision would leave the cumulative count more than
    one call outside [budget - tolerance, budget + tolerance] of the steps, it is flipped.
    """

    def __init__(self, budget: float = 0.22, tolerance: float = 0.01, window: int = 1024, horizon: float = 8.0):
        if not 0.0 <= budget <= 1.0:
            raise ValueError(f"call budget {budget} is not in [0, 1]")
        self.budget, self.tolerance, self.horizon = budget, tolerance, horizon
        self.recent: deque[float] = deque(maxlen=window)
        self.sorted: list[float] = []
        self.steps = self.calls = self.guarded = 0

    @property
    def level(self) -> float:
        return min(max(self.budget + (self.budget * self.steps - self.calls) / self.horizon, 0.0), 1.0)

    @property
    def rate(self) -> float:
        return self.calls / max(self.steps, 1)

    def decide(self, call_logit: float) -> bool:
        z = float(call_logit)
        lo, hi = bisect.bisect_left(self.sorted, z), bisect.bisect_right(self.sorted, z)
        mid_rank = len(self.sorted) - hi + (hi - lo + 1) / 2
        call = mid_rank <= self.level * (len(self.sorted) + 1)
        steps = self.steps + 1
        if not call and self.calls < (self.budget - self.tolerance) * steps - 1:
            call, self.guarded = True, self.guarded + 1
        elif call and self.calls + 1 > (self.budget + self.tolerance) * steps + 1:
            call, self.guarded = False, self.guarded + 1
        self._remember(z)
        self.steps, self.calls = steps, self.calls + call
        return call

    def _remember(self, z: float) -> None:
        if len(self.recent) == self.recent.maxlen:
            self.sorted.pop(bisect.bisect_left(self.sorted, self.recent[0]))
        self.recent.append(z)
        bisect.insort(self.sorted, z)
