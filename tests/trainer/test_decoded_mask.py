"""A.4.3's call mask C_M decoded from a model's <CALL> logits, on hand-worked logits."""

from __future__ import annotations

import torch

from trainer.decoded_mask import decode_call_mask
from trainer.masks import num_calls

CALL = 3  # the last of 4 ids


def logits_with_call(call: list[float], best_other: list[float]) -> torch.Tensor:
    """[positions, 4] logits: token 0 holds `best_other`, tokens 1-2 are far below, token 3
    (<CALL>) holds `call`."""
    n = len(call)
    out = torch.full((n, 4), -100.0)
    out[:, 0] = torch.tensor(best_other)
    out[:, CALL] = torch.tensor(call)
    return out


def called(mask: torch.Tensor) -> list[int]:
    return mask.nonzero().flatten().tolist()


def test_the_decoded_mask_calls_the_trainers_15_percent():
    # one rule for "15% of tokens" (trainer.masks.num_calls: round half to even); at n = 30, 70,
    # 110 rounding half up would call one more
    assert [num_calls(n) for n in (20, 10, 3, 4, 100, 30, 70, 110)] == [3, 2, 0, 1, 15, 4, 10, 16]
    for n in range(1, 200):
        assert int(decode_call_mask(torch.randn(n, 4), CALL).sum()) == num_calls(n)


def test_more_top_calls_than_budget_keeps_highest_call_logits():
    # 20 positions, budget 3. Positions 0-4: <CALL> is the top logit (call 5,4,3,2,1 vs 0).
    # Position 5 has the highest call logit (10) but another token is higher (11): not a top.
    call = [5, 4, 3, 2, 1, 10] + [-5.0] * 14
    other = [0, 0, 0, 0, 0, 11] + [0.0] * 14
    mask = decode_call_mask(logits_with_call(call, other), CALL)
    assert called(mask) == [0, 1, 2]


def test_fewer_top_calls_than_budget_adds_next_highest_call_logits():
    # Budget 3; only position 7 has <CALL> on top (call 0.5 > 0). The two highest call
    # logits among the rest (position 2: -0.1, position 11: -0.2) fill the budget;
    # position 4 (-0.3) is next and left out.
    call = [-3.0] * 20
    other = [0.0] * 20
    call[7], call[2], call[11], call[4] = 0.5, -0.1, -0.2, -0.3
    other[2] = other[11] = other[4] = 5.0
    mask = decode_call_mask(logits_with_call(call, other), CALL)
    assert called(mask) == [2, 7, 11]


def test_top_call_with_low_logit_beats_non_top_with_high_logit():
    # Budget 3: three tops with call logits -1 (others at -2) outrank a non-top with call 9.
    call = [-1.0, -1.0, -1.0, 9.0] + [-50.0] * 16
    other = [-2.0, -2.0, -2.0, 10.0] + [0.0] * 16
    assert called(decode_call_mask(logits_with_call(call, other), CALL)) == [0, 1, 2]


def test_a_tie_with_another_token_counts_as_top():
    call = [1.0] + [-50.0] * 19
    other = [1.0] + [0.0] * 19
    call[5], call[6] = -40.0, -41.0  # the next-highest non-tops fill the budget
    assert called(decode_call_mask(logits_with_call(call, other), CALL)) == [0, 5, 6]


def test_eos_targets_are_never_calls_but_count_in_the_budget():
    # 20 positions, budget round(0.15 * 20) = 3 of all of them. Position 0 (an EOS target)
    # has <CALL> on top with the highest call logit; it is skipped, and the budget is still 3.
    call = [9.0, 5.0, 4.0, 3.0, 2.0] + [-5.0] * 15
    other = [0.0] * 20
    candidates = torch.tensor([False] + [True] * 19)
    assert called(decode_call_mask(logits_with_call(call, other), CALL, candidates=candidates)) == [1, 2, 3]
    # fewer tops than the budget: the fill also skips non-candidates
    call = [-1.0, -2.0, -3.0, -4.0] + [-50.0] * 16
    other = [5.0] * 20
    candidates = torch.tensor([True, False] + [True] * 18)
    assert called(decode_call_mask(logits_with_call(call, other), CALL, candidates=candidates)) == [0, 2, 3]


def test_mask_keeps_the_batch_shape_and_counts_over_the_whole_batch():
    logits = torch.randn(2, 10, 4)
    mask = decode_call_mask(logits, CALL)
    assert mask.shape == (2, 10) and int(mask.sum()) == 3  # 15% of 20, not of each row
