"""BatchedLM: many sequences in one forward, each with its own KV cache, agree with reading
each sequence whole and alone (GPT-2 and a Llama-style model), and read only new tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from evaluation.backends.batched_lm import BatchedLM


def gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=101, n_embd=32, n_layer=2, n_head=2, n_positions=64)).eval()


def llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        max_position_embeddings=64)).eval()


def last_logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([list(ids)])).logits[0, -1]


@pytest.mark.parametrize("make", [gpt2, llama])
def test_rows_share_a_forward_and_read_only_new_tokens(make, monkeypatch):
    model = make()
    lm = BatchedLM(model)
    forwards = []
    forward = lm._forward
    monkeypatch.setattr(lm, "_forward", lambda reads: forwards.append(len(reads)) or forward(reads))
    a, b, c = list(range(3, 16)), list(range(50, 60)), [40, 41]

    def check(rows, read, groups):
        forwards.clear()
        logits, n = lm.logits(rows)
        assert n == read and sorted(forwards) == groups
        for row, (_, ids) in zip(logits, rows):
            torch.testing.assert_close(row, last_logits(model, ids), atol=1e-5, rtol=1e-5)

    check([("a", a[:8]), ("b", b[:5]), ("c", c)], [8, 5, 2], [1, 2])  # 8 and 5 new tokens in one forward
    check([("a", a[:11]), ("b", b[:9])], [3, 4], [2])  # rows append different numbers of tokens
    check([("a", a[:11]), ("c", c + [42])], [1, 1], [2])  # rows 0 and 2; "a" has nothing new: its last token re-read
    changed = a[:5] + [60] + a[6:11]
    check([("b", b), ("a", changed)], [1, 6], [1, 1])  # "a" diverges at 5: rolled back there
    lm.release("b")
    check([("d", [5, 6, 7]), ("a", changed + [61]), ("e", [1, 2])], [3, 1, 2], [1, 2])  # "d" takes b's row
    assert sorted(row for row, _ in lm._held.values()) == [0, 1, 2, 3]


@pytest.mark.parametrize("make", [gpt2, llama])
def test_one_row_per_forward_and_the_reference_agree(make):
    model = make()
    rows = [(0, [1, 2, 3, 4, 5, 6]), (1, [9, 8]), (2, [30, 31, 32, 33])]
    batched, _ = BatchedLM(model).logits(rows)
    single, read = BatchedLM(model, max_batch=1).logits(rows)
    reference, whole = BatchedLM(model, reuse_cache=False).logits(rows)
    torch.testing.assert_close(batched, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, reference, atol=1e-5, rtol=1e-5)
    assert read == whole == [6, 2, 4]


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="empty input"):
        BatchedLM(gpt2()).logits([(0, [1]), (1, [])])
