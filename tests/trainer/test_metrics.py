"""The call-decision metrics worked out by hand on a 3-token vocabulary, 4 positions."""

import math

import pytest
import torch

from trainer.metrics import interval_metrics, micro_batch_sums, roc_auc
from trainer.objective import FULL, lacy_loss, logit_stats

# Vocabulary {a: 0, b: 1, <CALL>: 2}; exp(logits) per position, each summing to 8:
#   1: [1, 3, 4]  <CALL> top (4 > 3), p(CALL) = 1/2, target b: p = 3/8, p_CALL = 3/4
#   2: [2, 2, 4]  <CALL> top (4 > 2), p(CALL) = 1/2, target a: p = 1/4, p_CALL = 1/2
#   3: [6, 1, 1]  a top,              p(CALL) = 1/8, target a: p = 6/8, p_CALL = 6/7
#   4: [3, 3, 2]  a top (first of ties), p(CALL) = 1/4, target b: p = 3/8, p_CALL = 1/2
LOGITS = torch.log(torch.tensor([[1.0, 3, 4], [2, 2, 4], [6, 1, 1], [3, 3, 2]], dtype=torch.float64))
TARGETS = torch.tensor([1, 0, 0, 1])
CALL = torch.tensor([True, False, False, True])
IGNORE = torch.tensor([False, True, False, True])  # position 4 is a call: only position 2 counts as ignored


def test_roc_auc_by_hand():
    # positives score log 4, log 2; negatives log 4, log 1:
    # (4 vs 4) = 1/2, (4 vs 1) = 1, (2 vs 4) = 0, (2 vs 1) = 1  ->  2.5 / 4
    auc, defined = roc_auc(LOGITS[:, 2], CALL)
    assert defined and auc.item() == pytest.approx(0.625, abs=1e-12)
    auc, defined = roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([False, False, True, True]))
    assert defined and auc.item() == pytest.approx(0.75, abs=1e-12)  # 3 of 4 pairs in order


def test_roc_auc_equals_pairwise_count_with_ties():
    g = torch.Generator().manual_seed(0)
    score = torch.randint(0, 6, (50,), generator=g).float()  # many ties
    positive = torch.rand(50, generator=g) < 0.3
    pos, neg = score[positive], score[~positive]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0).double() + 0.5 * (diff == 0).double()).mean()
    assert roc_auc(score, positive)[0].item() == pytest.approx(expected.item(), abs=1e-12)


def test_roc_auc_undefined_without_both_classes():
    auc, defined = roc_auc(torch.tensor([1.0, 2.0]), torch.tensor([False, False]))
    assert not defined and auc.item() == 0


def test_micro_batch_metrics_by_hand():
    stats = logit_stats(LOGITS, TARGETS, 2)
    loss = lacy_loss(LOGITS, TARGETS, CALL, IGNORE, 2, FULL)
    m = interval_metrics(micro_batch_sums(stats, CALL, IGNORE, loss))
    expected = {
        "loss": loss.item(),
        "call_fraction": 1 / 2,
        "ignore_fraction": 1 / 4,
        "call_top_fraction": 2 / 4,
        "p_call_at_call": (1 / 2 + 1 / 4) / 2,
        "p_call_at_non_call": (1 / 2 + 1 / 8) / 2,
        "call_auc": 0.625,
        "call_loss": math.log(8 / 3),
        "call_loss_renormalized": (math.log(4 / 3) + math.log(2)) / 2,
        "non_call_loss": (math.log(2) + math.log(7 / 6)) / 2,
        "non_call_loss_full": (math.log(4) + math.log(8 / 6)) / 2,
        "call_target_loss": (math.log(2) + math.log(4)) / 2,
    }
    assert m.keys() == expected.keys()
    for k, v in expected.items():
        assert m[k] == pytest.approx(v, abs=1e-12), k


def test_auc_is_the_mean_over_micro_batches_with_calls():
    stats = logit_stats(LOGITS, TARGETS, 2)
    none = torch.zeros(4, dtype=torch.bool)
    loss = torch.tensor(1.0, dtype=torch.float64)
    other = CALL.roll(1)  # calls at positions 1, 2: scores log 4, log 4 vs log 1, log 2 -> AUC 1
    sums = [micro_batch_sums(stats, mask, none, loss) for mask in (CALL, other, none)]
    m = interval_metrics(sum(sums))
    assert m["call_auc"] == pytest.approx((0.625 + 1) / 2, abs=1e-12)  # the batch without calls does not count
    assert m["call_top_fraction"] == pytest.approx(6 / 12, abs=1e-12)
    without = interval_metrics(sums[2])
    assert without["call_auc"] is None and without["call_loss"] is None and without["p_call_at_call"] is None
