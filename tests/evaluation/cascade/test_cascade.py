"""The cascade rules of A.5 on hand-worked cases: call decoding, the vocabulary fallback,
multi-token appends and their cap, the running call threshold, the repetition penalty,
and KV-cache reuse (equal outputs, only new tokens read)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from evaluation.backends.partners import CachedLM, PartnerQuery, PartnerReply, continuation_text, repetition_penalty
from evaluation.backends.transformers_backend import TransformersBackend
from evaluation.cascade.budget import CallBudget
from evaluation.cascade.generate import CascadeConfig, PartnerTokenMap, generate, rag_prefix, render, summarize
from evaluation.checkpoint import load_checkpoint


class ScriptedPartner:
    """A partner whose candidate texts are given per call (to check the cascade's rules
    independently of any model); records what it was asked."""

    name = "scripted"

    def __init__(self, script: list[tuple[str, ...]]):
        self.script = list(script)
        self.queries: list[PartnerQuery] = []

    def top_tokens(self, queries):
        self.queries += queries
        return [PartnerReply(self.script.pop(0), tokens_processed=7) for _ in queries]

    def release(self, key):
        pass


@pytest.fixture(scope="module")
def small(random_checkpoint):
    return load_checkpoint(random_checkpoint)


ALWAYS = CascadeConfig(call_budget=1.0)  # q = 1: every step calls


def pieces(tok, ids):
    return [tok.piece(i) for i in ids]


# --- repetition penalty ----------------------------------------------------------------

def test_repetition_penalty_matches_transformers():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0, 4.0])
    seen = [0, 1, 1, 3]
    ours = repetition_penalty(logits, seen, 1.2)
    assert torch.allclose(ours, torch.tensor([2.0 / 1.2, -1.2, 0.5, -3.6, 4.0]))
    hf = RepetitionPenaltyLogitsProcessor(1.2)(torch.tensor([seen]), logits[None].clone())[0]
    assert torch.allclose(ours, hf)


# --- equal call budgets ----------------------------------------------------------------

def test_call_budget_hand_worked():
    b = CallBudget(0.25, tolerance=0.5, window=3, horizon=4.0)  # a wide guard band: the rule alone
    # step 0: W = {}, q = 0.25; mid-rank of 1.0 is 0 + 1/2 = 0.5 > 0.25 * 1 -> no call
    assert b.level == 0.25 and b.decide(1.0) is False
    # step 1: d = 0.25, q = 0.25 + 0.25/4 = 0.3125; W = {1}; mid-rank of 2.0 is 0.5 <= 0.3125 * 2 -> call
    assert b.level == 0.3125 and b.decide(2.0) is True
    # step 2: d = 0.5 - 1 = -0.5, q = 0.125; W = {1, 2}; mid-rank of 3.0 is 0.5 > 0.125 * 3 -> no call
    assert b.level == 0.125 and b.decide(3.0) is False
    # step 3: d = 0.75 - 1, q = 0.1875; W = {1, 2, 3} (full); mid-rank of 0.0 is 3.5 -> no call
    assert b.level == 0.1875 and b.decide(0.0) is False
    # the window dropped 1.0: W = {2, 3, 0}; d = 0, q = 0.25; tie at 3.0: 0 + (1 + 1)/2 = 1 <= 0.25 * 4 -> call
    assert sorted(b.recent) == [0.0, 2.0, 3.0] and b.level == 0.25 and b.decide(3.0) is True
    assert (b.steps, b.calls, b.guarded) == (5, 2, 0)


def test_call_budget_guard_flips_only_outside_the_band():
    low = CallBudget(0.4, tolerance=0.0, horizon=1e9)  # feedback off: the level stays at 0.4
    assert low.decide(0.0) is False  # mid-rank 0.5 > 0.4 * 1; 0 calls >= 0.4 * 1 - 1: inside the band
    assert low.decide(-1.0) is False  # mid-rank 1.5 > 0.8; 0 >= 0.4 * 2 - 1
    assert low.decide(-2.0) is True  # mid-rank 2.5 > 1.2 would not call, but 0 < 0.4 * 3 - 1: forced
    assert low.decide(-3.0) is False  # 3.5 > 1.6; 1 >= 0.4 * 4 - 1
    assert (low.guarded, low.steps, low.calls) == (1, 4, 1)
    high = CallBudget(0.5, tolerance=0.0, horizon=1e9)
    assert high.decide(0.0) is True  # mid-rank 0.5 <= 0.5; 1 call <= 0.5 * 1 + 1
    assert high.decide(1.0) is True  # 0.5 <= 1.0; 2 <= 0.5 * 2 + 1
    assert high.decide(2.0) is False  # 0.5 <= 1.5 would call, but 3 > 0.5 * 3 + 1: blocked
    assert (high.guarded, high.steps, high.calls) == (1, 3, 2)


def test_call_budget_extremes():
    never, always = CallBudget(0.0), CallBudget(1.0)
    assert not any(never.decide(z) for z in [5.0, 50.0, -1.0])
    assert all(always.decide(z) for z in [-5.0, -50.0, 1.0])


N = 10_000  # about 40 biographies of 256 tokens
STREAMS = {
    "noisy stationary": lambda rng: rng.normal(size=N),
    "drift up": lambda rng: rng.normal(size=N) + 0.01 * np.arange(N),
    "drift down": lambda rng: rng.normal(size=N) - 0.01 * np.arange(N),
    "flat (all tied)": lambda rng: np.full(N, 3.0),
    "flat at +inf-like saturation": lambda rng: np.full(N, 1e30),
    "jump up": lambda rng: rng.normal(size=N) + 20.0 * (np.arange(N) >= N // 3),
    "jump down": lambda rng: rng.normal(size=N) - 20.0 * (np.arange(N) >= N // 3),
    "few distinct values": lambda rng: rng.integers(0, 3, size=N).astype(float),
    "slow sine": lambda rng: np.sin(np.arange(N) / 500.0) * 5 + rng.normal(size=N) * 0.1,
}


@pytest.mark.parametrize("budget", [0.22, 0.15, 0.5])
@pytest.mark.parametrize("stream", list(STREAMS))
def test_call_budget_holds_the_band_whatever_the_logits_do(stream, budget):
    controller = CallBudget(budget)
    calls = np.array([controller.decide(z) for z in STREAMS[stream](np.random.default_rng(0))])
    assert abs(calls.mean() - budget) <= 0.02
    assert controller.guarded / N < 0.02  # the feedback holds the rate; the guard is a last resort
    for end in (500, 2000, 5000):  # at every prefix long enough for the band to be met
        assert abs(calls[:end].mean() - budget) <= 0.02, end


def test_call_budget_calls_where_the_logit_is_high():
    """On an informative stationary stream the calls are the high logits, not a schedule."""
    z = np.random.default_rng(1).normal(size=N)
    controller = CallBudget(0.22)
    calls = np.array([controller.decide(v) for v in z])
    assert controller.guarded / N < 0.01  # the quantile rule decides, the guard almost never
    top = z >= np.quantile(z, 1 - 0.22)
    assert (calls & top).sum() / calls.sum() > 0.8  # precision against the true top 22% (0.22 by chance)
    assert (z[calls] > np.median(z)).mean() > 0.97
    gaps = np.diff(np.flatnonzero(calls))
    assert gaps.std() > 2.0  # irregular spacing, as the logits are


def test_call_budget_follows_the_logit_through_a_drift():
    """Drifting up, the calls still pick the locally high logits: against the stream with the
    trend removed, they are mostly in the top half."""
    rng = np.random.default_rng(2)
    noise = rng.normal(size=N)
    controller = CallBudget(0.22)
    calls = np.array([controller.decide(v) for v in noise + 0.002 * np.arange(N)])
    assert (noise[calls] > np.median(noise)).mean() > 0.8


# --- our vocabulary for partner tokens -------------------------------------------------

def test_partner_token_map(tok):
    m = PartnerTokenMap(tok, max_tokens=3)
    assert pieces(tok, m.to_ours(" the")) == ["▁the"]  # a word-initial token keeps its space
    assert pieces(tok, m.to_ours("198")) == ["1", "9", "8"]  # split whole (digits are split)
    assert m.to_ours(" 1987") is None  # "▁", "1", "9", "8", "7": more than 3 of our tokens
    assert pieces(tok, m.to_ours("\n")) == ["<0x0A>"]  # an ASCII byte piece is one of ours
    assert m.to_ours("中") is None  # only byte-fallback pieces of non-ASCII bytes
    assert m.to_ours("") is None  # a special token decodes to nothing
    assert m.to_ours("\ufffd") is None  # a partial UTF-8 character


# --- call decoding ---------------------------------------------------------------------

def test_partner_reads_text_so_far_without_call(small):
    partner = ScriptedPartner([(" the",), (" cat",), (" sat",)])
    gen = generate(small, ["Ralph Earl is"], partner, CascadeConfig(call_budget=1.0, max_new_tokens=3))[0]
    assert [q.text for q in partner.queries] == ["Ralph Earl is", "Ralph Earl is the", "Ralph Earl is the cat"]
    assert gen.text == " the cat sat" and gen.from_partner == [True] * 3  # the first piece is "▁the"
    assert gen.prompt + gen.text == "Ralph Earl is the cat sat"
    assert (gen.calls, gen.steps, gen.call_rate) == (3, 3, 1.0)
    assert gen.segments == [(" the cat sat", True)]
    assert render(gen, color=False) == "Ralph Earl is[[ the cat sat]]"
    assert render(gen, color=True) == "Ralph Earl is\x1b[90m the cat sat\x1b[0m"
    assert gen.partner_tokens_processed == [7, 7, 7]


def test_partner_prefix_is_put_before_the_text(small):
    article = "Ralph Earl (1751-1801) was an American painter." + "x" * 9000
    prefix = rag_prefix("Ralph Earl", article)
    assert "Write a short biography about Ralph Earl." in prefix
    assert article[:8000] + "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n" in prefix
    assert article[:8001] not in prefix
    partner = ScriptedPartner([(" the",)])
    generate(small, ["Ralph Earl is"], partner, CascadeConfig(call_budget=1.0, max_new_tokens=1),
             partner_prefixes=[prefix])
    assert partner.queries[0].text == prefix + "Ralph Earl is"


def test_missing_token_falls_back_to_second_choice(small, tok):
    partner = ScriptedPartner([("中", " the"), (" 1987", "198")])
    gen = generate(small, ["Ralph Earl is"], partner, CascadeConfig(call_budget=1.0, max_new_tokens=4))[0]
    assert pieces(tok, gen.token_ids) == ["▁the", "1", "9", "8"]
    assert gen.from_partner == [True] * 4
    assert (gen.calls, gen.second_choice_calls, gen.multi_token_calls) == (2, 2, 1)


def test_both_choices_missing_uses_the_small_models_token(small):
    own = generate(small, ["Ralph Earl is"], None, CascadeConfig(calls=False, max_new_tokens=1))[0]
    partner = ScriptedPartner([("", "\ufffd")])
    gen = generate(small, ["Ralph Earl is"], partner, CascadeConfig(call_budget=1.0, max_new_tokens=1))[0]
    assert gen.token_ids == own.token_ids and gen.from_partner == [False]
    assert (gen.calls, gen.rejected_calls) == (1, 1)


def test_multi_token_append_is_cut_at_max_new_tokens(small, tok):
    partner = ScriptedPartner([("198",)])
    gen = generate(small, ["Ralph Earl is"], partner, CascadeConfig(call_budget=1.0, max_new_tokens=2))[0]
    assert pieces(tok, gen.token_ids) == ["1", "9"] and gen.stop == "max_new_tokens"


def test_generation_stops_at_the_small_models_context(small):
    gen = generate(small, ["Ralph Earl is"], None, CascadeConfig(calls=False, max_new_tokens=500))[0]
    prompt_tokens = 1 + len(small.tokenizer.encode("Ralph Earl is"))  # EOS + prompt
    assert gen.stop == "context" and prompt_tokens + len(gen.token_ids) == small.max_positions == 128


def test_no_call_needs_no_partner_and_never_calls(small):
    prompts = ["Ralph Earl is", "The cat"]
    off = generate(small, prompts, None, CascadeConfig(calls=False, max_new_tokens=12))
    never = generate(small, prompts, ScriptedPartner([]), CascadeConfig(call_budget=0.0, max_new_tokens=12))
    assert [g.token_ids for g in off] == [g.token_ids for g in never]
    assert all(g.calls == 0 and not any(g.from_partner) for g in off)
    with pytest.raises(ValueError, match="no partner"):
        generate(small, prompts, None, CascadeConfig())


def test_trained_model_generates_its_sentence(trained_checkpoint):
    model = load_checkpoint(trained_checkpoint)
    gen = generate(model, ["the cat"], None, CascadeConfig(calls=False, max_new_tokens=12))[0]
    assert gen.text.startswith(" sat on the mat . the cat sat on the mat")
    assert gen.stop == "max_new_tokens" and len(gen.token_ids) == 12


def test_trained_partner_writes_when_always_called(small, trained_checkpoint):
    partner = TransformersBackend(trained_checkpoint)
    gen = generate(small, ["the cat"], partner, CascadeConfig(call_budget=1.0, max_new_tokens=6))[0]
    assert gen.text == " sat on the mat ." and all(gen.from_partner)
    assert len(gen.token_ids) == 6 and gen.calls == 6
    assert gen.partner_tokens_processed == [2, 1, 1, 1, 1, 1]  # "the cat", then one new token per call


class EchoPartner(ScriptedPartner):
    """Always offers " the"."""

    def __init__(self):
        super().__init__([])

    def top_tokens(self, queries):
        self.queries += queries
        return [PartnerReply((" the",), tokens_processed=1) for _ in queries]


@pytest.fixture(scope="module")
def caller(small):
    """The random model with its <CALL> row moved toward the mean final hidden state, so that
    <CALL> is the argmax at about half of the positions."""
    model = copy.deepcopy(small.model)
    ids = torch.tensor([[small.tokenizer.eos_id] + small.tokenizer.encode("The cat sat on the mat.").tolist()])
    with torch.no_grad():
        mean = model.transformer(input_ids=ids).last_hidden_state[0].mean(0)
        model.lm_head.weight[small.call_id] += 0.5 * mean / mean.norm()
    return dataclasses.replace(small, model=model)


def test_native_mode_calls_exactly_where_call_is_the_argmax(caller):
    prompts = ["Ralph Earl is", "The river flows"]
    gens = generate(caller, prompts, EchoPartner(), CascadeConfig(call_mode="native", max_new_tokens=30))
    tok, call_id = caller.tokenizer, caller.call_id
    for prompt, gen in zip(prompts, gens):
        ids = [tok.eos_id] + tok.encode(prompt).tolist()
        for token, from_partner in zip(gen.token_ids, gen.from_partner):  # one token per step (" the" is one)
            logits = caller.model(input_ids=torch.tensor([ids])).logits[0, -1]
            top = int(repetition_penalty(logits, ids, 1.2).argmax())
            assert from_partner == (top == call_id)
            ids.append(token)
    calls, steps = sum(g.calls for g in gens), sum(g.steps for g in gens)
    assert 0 < calls < steps  # the check above saw both outcomes


def test_budgeted_mode_holds_the_budget_over_all_generations(caller):
    prompts = ["Ralph Earl is", "The river flows", "Paris is the capital of", "She played the piano"]
    gens = generate(caller, prompts, EchoPartner(), CascadeConfig(call_budget=0.22, max_new_tokens=60))
    summary = summarize(gens)
    assert summary["call_rate"] == sum(g.calls for g in gens) / sum(g.steps for g in gens)
    assert abs(summary["call_rate"] - 0.22) <= 0.02
    native = summarize(generate(caller, prompts, EchoPartner(), CascadeConfig(call_mode="native", max_new_tokens=60)))
    assert abs(native["call_rate"] - 0.22) > 0.02  # this model's own rate is another: the budget did the work


def test_unknown_call_mode_is_refused():
    with pytest.raises(ValueError, match="unknown call mode 'sometimes'"):
        CascadeConfig(call_mode="sometimes")


# --- KV caches -------------------------------------------------------------------------

def test_cached_lm_reads_only_new_tokens_and_matches_full_forward(small):
    lm = CachedLM(small.model)
    ids = list(range(3, 16))
    full = small.model(input_ids=torch.tensor([ids])).logits[0]
    logits, n = lm.logits("a", ids[:10])
    assert n == 10 and torch.allclose(logits, full[:10], atol=1e-5)
    logits, n = lm.logits("a", ids)  # 3 appended tokens
    assert n == 3 and torch.allclose(logits, full[10:], atol=1e-5)
    _, n = lm.logits("a", ids)  # nothing new: the last token is re-read for its logits
    assert n == 1
    changed = ids[:5] + [40] + ids[6:]  # diverges at position 5: roll back there
    logits, n = lm.logits("a", changed)
    assert n == len(ids) - 5
    assert torch.allclose(logits[-1], small.model(input_ids=torch.tensor([changed])).logits[0, -1], atol=1e-5)
    _, n = lm.logits("b", ids[:4])  # another sequence has its own cache
    assert n == 4


def test_partner_call_processes_only_new_tokens(random_partner):
    partner = TransformersBackend(random_partner)
    tokens = lambda text: len(partner.tokenizer(text).input_ids)  # noqa: E731
    first = partner.top_tokens([PartnerQuery(0, "the cat sat")])[0]
    second = partner.top_tokens([PartnerQuery(0, "the cat sat on the mat")])[0]
    assert first.tokens_processed == tokens("the cat sat")
    assert second.tokens_processed == tokens("the cat sat on the mat") - tokens("the cat sat")
    fresh = TransformersBackend(random_partner, reuse_cache=False)
    fresh.top_tokens([PartnerQuery(0, "the cat sat")])
    again = fresh.top_tokens([PartnerQuery(0, "the cat sat on the mat")])[0]
    assert again.tokens_processed == tokens("the cat sat on the mat")
    assert again.candidates == second.candidates


@pytest.mark.parametrize("partner_fixture", ["random_partner", "foreign_partner"])
def test_cascade_with_caches_equals_no_cache_reference(small, partner_fixture, request):
    """Same tokenizer as ours, and a byte-level BPE partner whose re-tokenization of the
    growing text diverges from its cache (rolled back to the common prefix)."""
    partner_dir = request.getfixturevalue(partner_fixture)
    prompts = ["Tell me a bio of Ralph Earl. Ralph Earl is", "The river flows"]
    prefixes = [rag_prefix("Ralph Earl", "An American painter."), ""]
    runs = {}
    for reuse in (True, False):
        config = CascadeConfig(max_new_tokens=40, call_budget=0.3, reuse_cache=reuse)
        runs[reuse] = generate(small, prompts, TransformersBackend(partner_dir, reuse_cache=reuse), config,
                               partner_prefixes=prefixes)
    for cached, reference in zip(runs[True], runs[False]):
        assert cached.token_ids == reference.token_ids
        assert cached.from_partner == reference.from_partner
        assert cached.calls == reference.calls > 0
        # the reference re-reads the whole partner input on every call; the cache reads less
        assert cached.partner_tokens_processed[0] == reference.partner_tokens_processed[0]
        assert sum(cached.partner_tokens_processed) < sum(reference.partner_tokens_processed)


def test_foreign_partner_tokens_decode_in_context(foreign_partner, small, tok):
    partner = TransformersBackend(foreign_partner)
    ids = partner.tokenizer("the cat sat on the").input_ids
    mat = partner.tokenizer(" mat").input_ids
    assert len(mat) == 1 and continuation_text(partner.tokenizer, ids, mat[0]) == " mat"
    year = partner.tokenizer(" 1751").input_ids
    assert len(year) == 1  # one partner token, five of ours ("▁", "1", "7", "5", "1"): missing
    assert PartnerTokenMap(tok).to_ours(continuation_text(partner.tokenizer, ids, year[0])) is None
    eos = partner.tokenizer.eos_token_id
    assert continuation_text(partner.tokenizer, ids, eos) == ""  # special tokens are missing too
    gen = generate(small, ["Ralph Earl was born in"], partner, CascadeConfig(call_budget=1.0, max_new_tokens=8))[0]
    assert gen.calls == gen.steps  # every step called
    # each call appended its partner tokens, or one small-model token when rejected
    assert sum(gen.from_partner) + gen.rejected_calls == len(gen.token_ids) == 8
