"""A.4.3 on hand-worked logits: the call-mask decoding rule, the call loss (eq. A.5), the
non-call loss (eq. A.6); packing; the matched baseline on the model's call mask."""

from __future__ import annotations

import math

import pytest
import torch

from evaluation.checkpoint import write_random_checkpoint
from evaluation.validation import (
    LossSums,
    ValidationConfig,
    call_budget,
    decode_call_mask,
    evaluate_validation,
    packed_batches,
    token_losses,
    validation_stream,
)

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


def test_call_budget_is_15_percent_rounded_half_up():
    assert [call_budget(n) for n in (20, 10, 3, 4, 100)] == [3, 2, 0, 1, 15]


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


def test_mask_keeps_the_batch_shape_and_counts_over_the_whole_batch():
    logits = torch.randn(2, 10, 4)
    mask = decode_call_mask(logits, CALL)
    assert mask.shape == (2, 10) and int(mask.sum()) == 3  # 15% of 20, not of each row


def test_call_and_non_call_token_losses_by_hand():
    # probabilities over {0, 1, CALL=2} are 1/8, 3/8, 4/8
    logits = torch.log(torch.tensor([[1.0, 3.0, 4.0], [1.0, 3.0, 4.0]]))
    full, no_call = token_losses(logits, torch.tensor([1, 0]), call_id=2)
    assert full.tolist() == pytest.approx([-math.log(3 / 8), -math.log(1 / 8)])  # eq. A.5: full softmax
    assert no_call.tolist() == pytest.approx([-math.log(3 / 4), -math.log(1 / 4)])  # eq. A.6: <CALL> at -inf
    with pytest.raises(ValueError, match="CALL"):
        token_losses(logits, torch.tensor([2, 0]), call_id=2)


def test_loss_sums_average_over_call_and_non_call_positions():
    sums = LossSums()
    full, no_call = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.5, 1.5, 2.5, 3.5])
    sums.add(full, no_call, torch.tensor([True, False, False, True]))
    out = sums.losses()
    assert out["call_loss"] == pytest.approx((1 + 4) / 2)
    assert out["non_call_loss"] == pytest.approx((1.5 + 2.5) / 2)
    assert out["total_loss"] == pytest.approx((1 + 4 + 1.5 + 2.5) / 4)
    assert out["loss_without_call"] == pytest.approx(8.0 / 4)


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


def test_tokenizer_mismatch_is_an_error(tmp_path, token_dataset, sentences):
    from pipelines.tokenizer import TokenizerConfig, train_tokenizer

    other_tok = train_tokenizer(["a different corpus entirely"] * 50 + sentences, tmp_path, TokenizerConfig(vocab_size=400))
    ckpt = write_random_checkpoint(tmp_path / "ckpt", other_tok)
    with pytest.raises(ValueError, match="differs from the tokenizer"):
        evaluate_validation(ckpt, token_dataset, log=lambda s: None)

