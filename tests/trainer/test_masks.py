"""Every mask of Table 5 on a 20-token micro-batch worked out by hand: k = round(0.15 * 20) = 3."""

import math

import pytest
import torch

from trainer.data import PackedLoader, load_documents
from trainer.masks import METHODS, Needs, TokenLabels, get_method, lacy_call_mask, num_calls, top_k_mask

nan = math.nan
#                    0    1    2    3    4    5    6    7    8    9   10   11   12   13   14   15   16   17   18   19
LOSS = torch.tensor([5.0, 1.0, 4.0, 2.0, 6.0, 0.5, 3.0, 3.0, 7.0, 0.1, 2.5, 4.5, 1.5, 3.5, 0.2, 5.5, 0.3, 2.2, 1.1, 9.0])
FACT = torch.tensor([1,   0,   1,   1,   0,   0,   1,   1,   0,   0,   1,   0,   1,   1,   0,   0,   0,   1,   0,   0]).bool()
OTHER = torch.tensor([0,  1,   0,   0,   1,   0,   0,   0,   1,   1,   0,   1,   0,   0,   0,   1,   1,   0,   1,   0]).bool()
# grammatical = neither (positions 5, 14, 19: 19 has the highest loss of all and is never picked)
EOS = torch.zeros(20, dtype=torch.bool)
EOS[14] = True  # an EOS target, labelled as the loader labels it: grammatical, judge 0, reference loss NaN
REF = torch.tensor([4.0, 1.0, 1.0, 2.5, 6.0, 0.0, 3.0, 1.0, 7.5, 0.1, 2.5, 4.0, 1.0, 3.0, nan, 5.0, 0.3, 2.0, 1.0, 1.0])
JUDGE = torch.tensor([0,  0,   1,   1,   0,   0,   0,   1,   1,   0,   0,   0,   0,   1,   0,   0,   0,   0,   0,   0]).bool()


def build_masks(method, labels, loss, generator=None):
    return get_method(method).masks(labels, loss, generator)


def positions(mask):
    return sorted(torch.nonzero(mask).flatten().tolist())


def labels(fact=FACT, judge=JUDGE):
    return TokenLabels(fact=fact, other=OTHER, eos=EOS, judge_call=judge, ref_loss=REF)


def test_k_is_rounded_fifteen_percent():
    assert num_calls(20) == 3 and num_calls(2048) == 307 and num_calls(4096) == 614


def test_baseline():
    call, ignore = build_masks("baseline", labels(), LOSS)
    assert positions(call) == [] and positions(ignore) == []


def test_lacy_highest_loss_facts():
    # facts by loss: 0 (5.0), 2 (4.0), 13 (3.5), 6 (3.0), 7 (3.0), 10 (2.5), 17 (2.2), 3 (2.0), 12 (1.5)
    assert positions(lacy_call_mask(LOSS, FACT)) == [0, 2, 13]
    call, ignore = build_masks("lacy", labels(), LOSS)
    assert positions(call) == [0, 2, 13] and positions(ignore) == []


def test_lacy_ties_go_to_the_earlier_position():
    # k = round(0.2 * 20) = 4: the fourth place is a tie at 3.0 between positions 6 and 7
    assert positions(lacy_call_mask(LOSS, FACT, call_fraction=0.2)) == [0, 2, 6, 13]


def test_lacy_with_too_few_facts_calls_them_all():
    few = torch.zeros(20, dtype=torch.bool)
    few[[4, 9]] = True
    assert positions(lacy_call_mask(LOSS, few)) == [4, 9]  # 2 calls (10%), not 3


def test_lacy_keeps_shape():
    assert lacy_call_mask(LOSS.view(4, 5), FACT.view(4, 5)).shape == (4, 5)


def test_rho1_lowest_excess_loss():
    # own - reference: 3 -> -0.5, 8 -> -0.5, then 0.0 at 1, 4, 6, 9, 10, 16: the earliest, 1.
    # Position 14 has no reference loss (NaN, an EOS target) and is never ranked.
    call, ignore = build_masks("rho1", labels(), LOSS)
    assert positions(call) == [1, 3, 8] and positions(ignore) == []


def test_llm_judge_calls_its_labels_up_to_fifteen_percent():
    # 5 judge labels (2, 3, 7, 8, 13) > k = 3: a uniform sample of 3 of them, drawn as spacy
    # draws among its facts (the same rule and generator); 2 labels (< k): both are calls
    counts = torch.zeros(20)
    for seed in range(1000):
        call, ignore = build_masks("llm_judge", labels(), LOSS, torch.Generator().manual_seed(seed))
        spacy = build_masks("spacy", labels(fact=JUDGE), LOSS, torch.Generator().manual_seed(seed))[0]
        assert torch.equal(call, spacy) and call.sum() == 3 and not ignore.any()
        counts += call
    # each label is drawn 3/5 of the time (600 of 1000; sd ~15)
    assert ((counts[JUDGE] - 600).abs() < 75).all() and counts[~JUDGE].sum() == 0
    two = torch.zeros(20, dtype=torch.bool)
    two[[3, 8]] = True
    assert positions(build_masks("llm_judge", labels(judge=two), LOSS, torch.Generator().manual_seed(0))[0]) == [3, 8]


def test_spacy_refloss_highest_reference_loss_facts():
    # facts by reference loss: 0 (4.0), 6 (3.0), 13 (3.0), 3 (2.5), 10 (2.5), ...
    call, ignore = build_masks("spacy_refloss", labels(), LOSS)
    assert positions(call) == [0, 6, 13] and positions(ignore) == []


def test_lacy_ignorefacts_ignores_the_other_facts():
    call, ignore = build_masks("lacy_ignorefacts", labels(), LOSS)
    assert positions(call) == [0, 2, 13]
    assert positions(ignore) == [3, 6, 7, 10, 12, 17]  # fact * (1 - C)


def test_lacy_ignore_tops_up_with_highest_loss_other_tokens():
    # facts 0, 2, 3, 13: calls 0, 2, 13; fact * (1 - C) = {3}, one token; round(0.15 * 20) = 3
    # ignored in all, so the 2 highest-loss *other* tokens join: 8 (7.0) and 4 (6.0).
    # Position 19 (grammatical, loss 9.0) is not a candidate.
    four = torch.zeros(20, dtype=torch.bool)
    four[[0, 2, 3, 13]] = True
    call, ignore = build_masks("lacy_ignore", labels(four), LOSS)
    assert positions(call) == [0, 2, 13]
    assert positions(ignore) == [3, 4, 8]


def test_lacy_ignore_adds_nothing_when_remaining_facts_exceed_the_budget():
    call, ignore = build_masks("lacy_ignore", labels(), LOSS)
    assert positions(ignore) == [3, 6, 7, 10, 12, 17]  # 6 > 3 already


def test_spacy_samples_facts_uniformly():
    counts = torch.zeros(20)
    for seed in range(900):
        call, ignore = build_masks("spacy", labels(), LOSS, torch.Generator().manual_seed(seed))
        assert call.sum() == 3 and not (call & ~FACT).any() and not ignore.any()
        counts += call
    # 9 facts, 3 drawn each time: each fact is drawn 1/3 of the time (300 of 900; sd ~14)
    assert ((counts[FACT] - 300).abs() < 60).all() and counts[~FACT].sum() == 0
    again = build_masks("spacy", labels(), LOSS, torch.Generator().manual_seed(5))[0]
    assert torch.equal(again, build_masks("spacy", labels(), LOSS, torch.Generator().manual_seed(5))[0])


def test_loss_based_is_bernoulli_fifteen_percent_of_the_non_eos_tokens():
    big = 20_000
    none = torch.zeros(big, dtype=torch.bool)
    eos = torch.arange(big) % 5 == 0  # a fifth of the targets are EOS
    call, ignore = build_masks("loss_based", TokenLabels(none, none, eos), None, torch.Generator().manual_seed(0))
    assert not (call & eos).any() and not ignore.any()
    assert abs(call[~eos].float().mean().item() - 0.15) < 0.01  # sd 0.0028


def test_no_rule_calls_or_ignores_an_eos_target_whatever_its_other_labels():
    # EOS targets 4, 8, 19 labelled fact, other and judge call with the highest own and
    # reference losses, the lowest excess loss: every rule would pick them but for `eos`
    eos = torch.zeros(20, dtype=torch.bool)
    eos[[4, 8, 19]] = True
    loss, ref = LOSS.clone(), REF.clone()
    loss[eos], ref[eos] = 50.0, 60.0  # excess -10: the lowest
    lab = TokenLabels(fact=FACT | eos, other=OTHER | eos, eos=eos, judge_call=JUDGE | eos, ref_loss=ref)
    for name in METHODS:
        for seed in range(50):
            call, ignore = build_masks(name, lab, loss, torch.Generator().manual_seed(seed))
            assert not ((call | ignore) & eos).any(), name
    assert positions(build_masks("lacy", lab, loss)[0]) == [0, 2, 13]  # as without the EOS targets


def test_no_method_calls_an_eos_target_of_the_loader(dataset, judge_dir, ref_dir):
    # the loader's own micro-batches and labels (EOS: grammatical, judge 0, reference loss NaN);
    # on the code before `TokenLabels.eos`, loss_based called about 15% of the EOS targets
    docs = load_documents([dataset], "train", judge_dirs=[judge_dir], ref_loss_dirs=[ref_dir],
                          needs=Needs(facts=True, judge=True, ref_loss=True))
    loader = PackedLoader(docs, seq_len=32, micro_batch_size=2, micro_batches_per_step=2, seed=0)
    eos_calls = {name: 0 for name in METHODS}
    eos_targets = 0
    for step in range(100):
        for k in range(2):
            b = loader.micro_batch(step, k)
            eos = b.targets.reshape(-1) == docs.tokenizer["eos_id"]
            eos_targets += int(eos.sum())
            for name in METHODS:
                call, ignore = build_masks(name, b.labels, torch.rand(eos.numel()), torch.Generator().manual_seed(step * 2 + k))
                eos_calls[name] += int(((call | ignore) & eos).sum())
    assert eos_targets > 60 and eos_calls == {name: 0 for name in METHODS}


def test_top_k_smallest_and_nothing():
    score = torch.tensor([3.0, 1.0, 2.0, 1.0])
    every = torch.ones(4, dtype=torch.bool)
    assert positions(top_k_mask(score, every, 2, largest=False)) == [1, 3]
    assert positions(top_k_mask(score, every, 0)) == []
    assert positions(top_k_mask(score, torch.zeros(4, dtype=torch.bool), 2)) == []


def test_every_method_has_a_mask():
    for name in METHODS:
        call, ignore = build_masks(name, labels(), LOSS, torch.Generator().manual_seed(0))
        assert call.dtype == ignore.dtype == torch.bool and call.shape == ignore.shape == (20,)
    with pytest.raises(ValueError, match="unknown method"):
        build_masks("lacy2", labels(), LOSS)
