"""A.4.3 on hand-worked logits: the call-mask decoding rule, the call loss (eq. A.5), the
non-call loss (eq. A.6); packing; the matched baseline on the model's call mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evaluation.checkpoint import write_random_checkpoint
from evaluation.measures.validation import (
    CallDecision,
    LossSums,
    ValidationConfig,
    call_auc,
    evaluate_validation,
    own_rule,
    packed_batches,
    token_stats,
    validation_stream,
)
from pipelines.classes import FACT, GRAMMATICAL, OTHER, UNLABELED
from trainer.objective import LogitStats


def called(mask: torch.Tensor) -> list[int]:
    return mask.nonzero().flatten().tolist()


def test_own_rule_of_lacy_skips_eos_targets():
    # 7 positions, k = round(0.15 * 7) = 1: the fact token with the highest own loss. Position 6
    # is an EOS target (UNLABELED) with the highest loss of all; position 0 is not a fact.
    loss = torch.tensor([9.0, 1.0, 3.0, 2.0, 0.5, 1.5, 10.0])
    cls = torch.tensor([OTHER, FACT, FACT, FACT, GRAMMATICAL, FACT, UNLABELED])
    stats = LogitStats(lse=loss, text_max=torch.zeros(7), target_logit=torch.zeros(7), call_logit=torch.zeros(7))
    assert called(own_rule("lacy", stats, cls, None, torch.Generator())) == [2]


def test_call_auc_by_hand():
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 0.35 beats one, 0.8 both -> 3 / 4
    assert call_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    # a tie counts one half: positive 1 vs negatives 1 (1/2) and 2 (0) -> 1/4
    assert call_auc(np.array([1.0, 1.0, 2.0]), np.array([1, 0, 0])) == pytest.approx(0.25)
    assert call_auc(np.array([1.0, 2.0]), np.array([1, 1])) is None  # one class: undefined


def test_call_decision_metrics_by_hand():
    # lse = 0, so p(<CALL>) = e^c / (1 + e^c): c = log 3 -> 3/4, 0 -> 1/2, log(1/3) -> 1/4.
    c = torch.tensor([math.log(3), 0.0, math.log(1 / 3), math.log(3), 0.0])
    stats = LogitStats(lse=torch.zeros(5), text_max=torch.zeros(5), target_logit=torch.zeros(5), call_logit=c)
    callable_ = torch.tensor([True, True, True, True, False])  # position 4 is an EOS target
    decision = CallDecision()
    decision.add(stats, torch.tensor([True, False, False, False, False]), callable_, {
        "facts": torch.tensor([True, False, False, True, True]),
        "own_rule": torch.tensor([False, True, False, False, False]),
        "hard_tokens": None,
    })
    out = decision.metrics({"hard_tokens": "no matched baseline given"})
    assert out["mean_p_call_at_calls"] == pytest.approx(0.75)
    assert out["mean_p_call_at_non_calls"] == pytest.approx((0.5 + 0.25 + 0.75) / 3)  # the EOS target left out
    assert out["call_auc_facts"] == pytest.approx(1.0)  # both facts (log 3) above both others (0, log 1/3)
    assert out["call_auc_own_rule"] == pytest.approx(1 / 3)  # 0 beats only log(1/3) of log 3, log 1/3, log 3
    assert out["call_auc_hard_tokens"] is None and out["call_auc_notes"]["hard_tokens"] == "no matched baseline given"


def test_call_and_non_call_token_losses_by_hand():
    # probabilities over {0, 1, CALL=2} are 1/8, 3/8, 4/8
    logits = torch.log(torch.tensor([[1.0, 3.0, 4.0], [1.0, 3.0, 4.0]]))
    stats = token_stats(logits, torch.tensor([1, 0]), call_id=2)
    full, no_call = stats.full_token_loss, stats.token_loss
    assert full.tolist() == pytest.approx([-math.log(3 / 8), -math.log(1 / 8)])  # eq. A.5: full softmax
    assert no_call.tolist() == pytest.approx([-math.log(3 / 4), -math.log(1 / 4)])  # eq. A.6: <CALL> at -inf
    with pytest.raises(ValueError, match="CALL"):
        token_stats(logits, torch.tensor([2, 0]), call_id=2)


def test_loss_sums_average_over_call_and_non_call_positions():
    sums = LossSums()
    full, no_call = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5, 1.5, 2.5, 3.5])
    sums.add(full, no_call, torch.tensor([True, False, False, True]))
    out = sums.losses()
    assert out["call_loss"] == pytest.approx((1 + 4) / 2)
    assert out["non_call_loss"] == pytest.approx((1.5 + 2.5) / 2)
    assert out["total_loss"] == pytest.approx((1 + 4 + 1.5 + 2.5) / 4)
    assert out["loss_without_call"] == pytest.approx(8.0 / 4)
    assert out["call_loss_without_call"] == pytest.approx((0.5 + 3.5) / 2)  # the call positions under p_CALL


def test_packing_puts_eos_before_each_document_and_targets_each_token_once(token_dataset, tok, sentences):
    stream, classes = validation_stream(token_dataset, tok.eos_id)
    # shard k holds rows k, k+2, ...; validation rows are those with i % 3 == 1 (conftest)
    docs = [tok.encode(s).tolist() for k in range(2) for i, s in enumerate(sentences) if i % 2 == k and i % 3 == 1]
    assert stream.tolist() == [t for d in docs for t in [tok.eos_id] + d]  # as the trainer packs
    assert (classes[stream == tok.eos_id] == -1).all()
    batches = list(packed_batches(stream, classes, seq_len=16, batch_size=3))
    targets = torch.cat([t.reshape(-1) for _, t, _ in batches])
    assert targets.tolist() == stream[1:].tolist()
    for inputs, t, cls in batches:
        assert inputs.shape == t.shape == cls.shape and (inputs[:, 1:] == t[:, :-1]).all()
    assert validation_stream(token_dataset, tok.eos_id, max_tokens=10)[0].tolist() == stream[:11].tolist()


def test_evaluate_validation_with_matched_baseline(random_checkpoint, random_partner, token_dataset):
    config = ValidationConfig(seq_len=32, batch_size=2)
    same = evaluate_validation(random_checkpoint, token_dataset, baseline=random_checkpoint, config=config, log=lambda s: None)
    # the model as its own baseline on its own mask gives its own losses
    for key in ("call_loss", "non_call_loss", "total_loss", "loss_without_call"):
        assert same[f"baseline_{key}"] == pytest.approx(same[key])
    n, k = same["tokens"], same["calls"]
    assert same["total_loss"] == pytest.approx((k * same["call_loss"] + (n - k) * same["non_call_loss"]) / n)
    assert abs(same["call_fraction"] - 0.15) < 0.02
    other = evaluate_validation(random_checkpoint, token_dataset, baseline=random_partner, config=config, log=lambda s: None)
    assert other["call_loss"] == same["call_loss"] and other["baseline_call_loss"] != same["call_loss"]
    assert other["fingerprint"] != same["fingerprint"]
    assert 0 <= other["calls_on_facts"] <= 1 and 0 <= other["facts_called"] <= 1
    assert 0 <= other["call_auc_facts"] <= 1 and 0 <= other["call_auc_hard_tokens"] <= 1
    assert other["call_auc_own_rule"] is None and "not a method of Table 5" in other["call_auc_notes"]["own_rule"]
    assert other["call_loss_without_call"] >= 0 and 0 < other["mean_p_call_at_calls"] < 1


def test_own_rule_auc_of_a_lacy_checkpoint(tmp_path, tokenizer_path, token_dataset):
    lacy = write_random_checkpoint(tmp_path / "lacy", tokenizer_path, seed=3, method="lacy")
    out = evaluate_validation(lacy, token_dataset, config=ValidationConfig(seq_len=32, batch_size=2), log=lambda s: None)
    assert 0 <= out["call_auc_own_rule"] <= 1 and out["call_auc_hard_tokens"] is None
    assert set(out["call_auc_notes"]) == {"hard_tokens"}


def test_tokenizer_mismatch_is_an_error(tmp_path, token_dataset, sentences):
    from pipelines.tokenizer import TokenizerConfig, train_tokenizer

    other_tok = train_tokenizer(["a different corpus entirely"] * 50 + sentences, tmp_path, TokenizerConfig(vocab_size=400))
    ckpt = write_random_checkpoint(tmp_path / "ckpt", other_tok)
    with pytest.raises(ValueError, match="differs from the tokenizer"):
        evaluate_validation(ckpt, token_dataset, log=lambda s: None)

