"""Both call objectives (`renormalized` = A.4 as printed, `full`) against their formulas worked
out by hand on a 3-token vocabulary, and against naive autograd references."""

import math

import pytest
import torch

from trainer import objective
from trainer.objective import FULL, RENORMALIZED, lacy_loss, logit_stats

# Vocabulary {a: 0, b: 1, <CALL>: 2}. exp(logits) per position:
#   position 1: [1, 3, 4] (sum 8): p(CALL) = 1/2, p_CALL(a) = 1/4, p_CALL(b) = 3/4
#   position 2: [2, 2, 4] (sum 8): p(CALL) = 1/2, p_CALL(a) = 1/2, p_CALL(b) = 1/2
# and under the whole vocabulary p(a), p(b) = 1/8, 3/8 at position 1 and 1/4, 1/4 at position 2.
LOGITS = torch.log(torch.tensor([[1.0, 3.0, 4.0], [2.0, 2.0, 4.0]], dtype=torch.float64))
TARGETS = torch.tensor([1, 0])  # b, then a
CALL = 2


def mask(*bits):
    return torch.tensor(bits, dtype=torch.bool)


@pytest.mark.parametrize(
    "call, ignore, expected",
    [
        # A.3 with C = 0: -(1/2)[log 3/4 + log 1/2]
        ((0, 0), (0, 0), -(math.log(3 / 4) + math.log(1 / 2)) / 2),
        # a call at position 1: -(1/2)[log p(CALL) + log p_CALL(a)] = -(1/2)[log 1/2 + log 1/2]
        ((1, 0), (0, 0), math.log(2)),
        # position 2 ignored; N stays 2 (A.4 divides by all positions): -(1/2) log 3/4
        ((0, 0), (0, 1), -math.log(3 / 4) / 2),
        # position 1 ignored, position 2 a call: -(1/2) log 1/2
        ((0, 1), (1, 0), math.log(2) / 2),
        # call and ignore on the same position: the call term stays (A.4 does not mask it)
        ((1, 0), (1, 0), -(math.log(1 / 2) + math.log(1 / 2)) / 2),
    ],
)
def test_renormalized_by_hand(call, ignore, expected):
    loss = lacy_loss(LOGITS, TARGETS, mask(*call), mask(*ignore), CALL, RENORMALIZED)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    "call, ignore, expected",
    [
        # C = I = 0: A.1, -(1/2)[log 3/8 + log 1/4]
        ((0, 0), (0, 0), -(math.log(3 / 8) + math.log(1 / 4)) / 2),
        # a call at position 1: -(1/2)[log p(CALL) + log p(a)] = -(1/2)[log 1/2 + log 1/4]
        ((1, 0), (0, 0), -(math.log(1 / 2) + math.log(1 / 4)) / 2),
        # position 2 ignored, N stays 2: -(1/2) log 3/8
        ((0, 0), (0, 1), -math.log(3 / 8) / 2),
        # position 1 ignored, position 2 a call: -(1/2) log 1/2
        ((0, 1), (1, 0), math.log(2) / 2),
        # call and ignore on the same position: the call term stays
        ((1, 0), (1, 0), -(math.log(1 / 2) + math.log(1 / 4)) / 2),
    ],
)
def test_full_by_hand(call, ignore, expected):
    loss = lacy_loss(LOGITS, TARGETS, mask(*call), mask(*ignore), CALL, FULL)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_full_gradient_by_hand():
    logits = LOGITS.clone().requires_grad_()
    lacy_loss(logits, TARGETS, mask(1, 0), mask(0, 0), CALL, FULL).backward()
    # call row: (1/N)(p - onehot(CALL)) = 1/2 [1/8, 3/8, 1/2 - 1]
    # non-call row: (1/N)(p - onehot(a)), <CALL> pushed down too = 1/2 [1/4 - 1, 1/4, 1/2]
    expected = torch.tensor([[1 / 16, 3 / 16, -1 / 4], [-3 / 8, 1 / 8, 1 / 4]], dtype=torch.float64)
    torch.testing.assert_close(logits.grad, expected, rtol=0, atol=1e-12)


def test_renormalized_gradient_by_hand():
    logits = LOGITS.clone().requires_grad_()
    lacy_loss(logits, TARGETS, mask(1, 0), mask(0, 0), CALL, RENORMALIZED).backward()
    # call row: (1/N)(softmax - onehot(CALL)) = 1/2 [1/8, 3/8, 4/8 - 1]
    # non-call row: (1/N)(p_CALL - onehot(a)), the <CALL> logit untouched = 1/2 [1/2 - 1, 1/2, 0]
    expected = torch.tensor([[1 / 16, 3 / 16, -1 / 4], [-1 / 4, 1 / 4, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(logits.grad, expected, rtol=0, atol=1e-12)


def test_stats_by_hand():
    s = logit_stats(LOGITS, TARGETS, CALL)
    torch.testing.assert_close(s.token_loss, torch.tensor([math.log(4 / 3), math.log(2)], dtype=torch.float64))
    torch.testing.assert_close(s.call_logprob, torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64)))
    torch.testing.assert_close(s.full_token_loss, torch.tensor([math.log(8 / 3), math.log(4)], dtype=torch.float64))
    torch.testing.assert_close(s.text_max, torch.log(torch.tensor([3.0, 2.0], dtype=torch.float64)))
    assert s.call_top.tolist() == [True, True]  # log 4 beats log 3 and log 2


def naive_a4(logits, targets, call, ignore):
    """`renormalized`: A.4 with a masked copy of the logits (what the fast version must equal)."""
    masked = logits.clone()
    masked[:, -1] = float("-inf")
    log_p_text = torch.log_softmax(masked, -1).gather(1, targets[:, None]).squeeze(1)
    log_p_call = torch.log_softmax(logits, -1)[:, -1]
    c, i = call.to(logits.dtype), ignore.to(logits.dtype)
    return -((1 - c) * (1 - i) * log_p_text + c * log_p_call).sum() / len(targets)


def naive_full(logits, targets, call, ignore):
    """`full`: cross-entropy with call targets swapped to <CALL>, ignored text positions dropped."""
    swapped = torch.where(call, logits.shape[1] - 1, targets)
    kept = (call | ~ignore).to(logits.dtype)
    return (kept * torch.nn.functional.cross_entropy(logits, swapped, reduction="none")).sum() / len(targets)


NAIVE = {RENORMALIZED: naive_a4, FULL: naive_full}


@pytest.mark.parametrize("call_objective", [RENORMALIZED, FULL])
@pytest.mark.parametrize("block_elements", [7, 1 << 18])  # many row blocks, one block
def test_matches_naive_formula_and_gradient(monkeypatch, block_elements, call_objective):
    monkeypatch.setattr(objective, "BLOCK_ELEMENTS", block_elements)
    g = torch.Generator().manual_seed(0)
    n, v = 37, 11
    logits = (torch.randn(n, v, generator=g, dtype=torch.float64) * 3)
    logits[5, -1] = 40.0  # p(CALL) ~ 1 at one position: the non-call term must stay finite
    targets = torch.randint(0, v - 1, (n,), generator=g)
    call = torch.rand(n, generator=g) < 0.3
    ignore = torch.rand(n, generator=g) < 0.3
    a = logits.clone().requires_grad_()
    b = logits.clone().requires_grad_()
    fast = lacy_loss(a, targets, call, ignore, v - 1, call_objective)
    slow = NAIVE[call_objective](b, targets, call, ignore)
    fast.backward(), slow.backward()
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_full_is_renormalized_plus_log_not_call_at_learned_positions():
    g = torch.Generator().manual_seed(3)
    n, v = 29, 6
    logits = torch.randn(n, v, generator=g, dtype=torch.float64) * 2
    targets = torch.randint(0, v - 1, (n,), generator=g)
    call, ignore = torch.rand(n, generator=g) < 0.3, torch.rand(n, generator=g) < 0.3
    learned = (~call & ~ignore).to(logits.dtype)
    log_not_call = torch.log1p(-torch.softmax(logits, -1)[:, -1])
    expected = lacy_loss(logits, targets, call, ignore, v - 1, RENORMALIZED) - (learned * log_not_call).sum() / n
    torch.testing.assert_close(lacy_loss(logits, targets, call, ignore, v - 1, FULL), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("call_objective", [RENORMALIZED, FULL])
def test_bf16_logits_reduce_in_fp32(call_objective):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(64, 50, generator=g)
    targets = torch.randint(0, 49, (64,), generator=g)
    call = torch.rand(64, generator=g) < 0.15
    none = torch.zeros(64, dtype=torch.bool)
    low = logits.bfloat16().requires_grad_()
    loss = lacy_loss(low, targets, call, none, 49, call_objective)
    loss.backward()
    assert loss.dtype == torch.float32 and low.grad.dtype == torch.bfloat16
    expected = NAIVE[call_objective](logits.bfloat16().float(), targets, call, none)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)


def test_call_must_be_last_id():
    with pytest.raises(ValueError, match="last id"):
        lacy_loss(LOGITS, TARGETS, mask(0, 0), mask(0, 0), 1, FULL)


def test_unknown_objective_is_named():
    with pytest.raises(ValueError, match="unknown call objective 'softmax'"):
        lacy_loss(LOGITS, TARGETS, mask(0, 0), mask(0, 0), CALL, "softmax")


def test_full_without_masks_is_a1_torch_cross_entropy(monkeypatch):
    monkeypatch.setattr(objective, "BLOCK_ELEMENTS", 5)
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(23, 9, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 8, (23,), generator=g)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    none = torch.zeros(23, dtype=torch.bool)
    ours, torchs = lacy_loss(a, targets, none, none, 8, FULL), torch.nn.functional.cross_entropy(b, targets)
    ours.backward(), torchs.backward()
    torch.testing.assert_close(ours, torchs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_stats_carry_no_graph():
    # metrics accumulated from the stats must not keep each step's graph alive
    logits = (torch.randn(4, 5, requires_grad=True) * 2)
    s = logit_stats(logits, torch.tensor([0, 1, 2, 3]), 4)
    for t in (s.lse, s.text_max, s.target_logit, s.call_logit, s.token_loss, s.call_logprob, s.full_token_loss):
        assert not t.requires_grad
