"""The cascade rules of A.5 on hand-worked cases: call decoding, the vocabulary fallback,
multi-token appends and their cap, rejected and declined calls, the repetition penalty,
the partner's input, and batched decoding with KV caches (outputs equal to the unbatched
reference, only new tokens read)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from evaluation.backends.partners import PartnerQuery, PartnerReply, continuation_text, penalize_rows
from evaluation.backends.transformers_backend import TransformersBackend
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
    ours = penalize_rows(logits[None], [seen], 1.2)[0]
    assert torch.allclose(ours, torch.tensor([2.0 / 1.2, -1.2, 0.5, -3.6, 4.0]))
    hf = RepetitionPenaltyLogitsProcessor(1.2)(torch.tensor([seen]), logits[None].clone())[0]
    assert torch.allclose(ours, hf)
    rows = torch.stack([logits, -logits])  # each row penalized over its own ids
    assert torch.allclose(penalize_rows(rows, [seen, [4, 4]], 1.2),
                          torch.stack([ours, torch.tensor([-2.0, 1.0, -0.5, 3.0, -4.8])]))


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


def test_declined_call_uses_the_small_models_token_and_counts_as_a_call(small):
    own = generate(small, ["Ralph Earl is"], None, CascadeConfig(calls=False, max_new_tokens=2))[0]
    partner = ScriptedPartner([(), ("", "\ufffd")])
    gen = generate(small, ["Ralph Earl is"], partner, CascadeConfig(call_budget=1.0, max_new_tokens=2))[0]
    assert gen.token_ids == own.token_ids and gen.from_partner == [False, False]
    assert (gen.calls, gen.declined_calls, gen.rejected_calls, gen.call_rate) == (2, 1, 1, 1.0)
    summary = summarize([gen, gen])
    assert (summary["calls"], summary["declined_calls"], summary["rejected_calls"]) == (4, 2, 2)


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
    assert gen.partner_tokens_processed == [3, 1, 1, 1, 1, 1]  # EOS + "the cat", then one new token per call


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
            top = int(penalize_rows(logits[None], [ids], 1.2).argmax())
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

def test_partner_call_processes_only_new_tokens(random_partner):
    partner = TransformersBackend(random_partner)
    tokens = lambda text: len(partner.input_ids(text))  # noqa: E731
    first = partner.top_tokens([PartnerQuery(0, "the cat sat")])[0]
    second = partner.top_tokens([PartnerQuery(0, "the cat sat on the mat")])[0]
    assert first.tokens_processed == tokens("the cat sat")
    assert second.tokens_processed == tokens("the cat sat on the mat") - tokens("the cat sat")
    fresh = TransformersBackend(random_partner, reuse_cache=False)
    fresh.top_tokens([PartnerQuery(0, "the cat sat")])
    again = fresh.top_tokens([PartnerQuery(0, "the cat sat on the mat")])[0]
    assert again.tokens_processed == tokens("the cat sat on the mat")
    assert again.candidates == second.candidates


PROMPTS = ["Tell me a bio of Ralph Earl. Ralph Earl is", "The river flows", "Paris is the capital of",
           "She played the piano every morning before school"]


@pytest.mark.parametrize("partner_fixture", ["random_partner", "foreign_partner", "trained_checkpoint"])
def test_batched_cascade_equals_the_unbatched_reference(small, partner_fixture, request):
    """One forward per step for all sequences (small model and partner) gives the tokens of
    reading each sequence whole and alone; also with one sequence per forward. The foreign
    partner (byte-level BPE) re-tokenizes the growing text differently from its cache (rolled
    back to the common prefix); the trained partner's context (128) is shorter than the RAG
    prompt, so that row's input is a window that moves at every call (re-read whole)."""
    partner_dir = request.getfixturevalue(partner_fixture)
    prefixes = [rag_prefix("Ralph Earl", "An American painter."), "", "", "A piano."]
    runs = {}
    for label, reuse, max_batch in (("batched", True, 0), ("one per forward", True, 1), ("reference", False, 0)):
        config = CascadeConfig(max_new_tokens=40, call_budget=0.3, reuse_cache=reuse, max_batch=max_batch)
        partner = TransformersBackend(partner_dir, reuse_cache=reuse, max_batch=max_batch)
        runs[label] = generate(small, PROMPTS, partner, config, partner_prefixes=prefixes)
    for label in ("batched", "one per forward"):
        for ours, reference in zip(runs[label], runs["reference"]):
            assert ours.token_ids == reference.token_ids
            assert ours.from_partner == reference.from_partner
            assert ours.calls == reference.calls > 0
            assert ours.partner_tokens_processed[0] == reference.partner_tokens_processed[0]
        # the reference re-reads the whole partner input on every call; the cache reads less
        read = {label: sum(sum(g.partner_tokens_processed) for g in gens) for label, gens in runs.items()}
        assert read["batched"] == read["one per forward"] < read["reference"]


class KeyedPartner(ScriptedPartner):
    """Offers the same candidates at every call of a sequence, by its key."""

    def __init__(self, by_key: dict[int, tuple[str, ...]]):
        super().__init__([])
        self.by_key = by_key

    def top_tokens(self, queries):
        self.queries += queries
        return [PartnerReply(self.by_key[q.key], tokens_processed=1) for q in queries]


def test_rows_appending_different_numbers_of_tokens_equal_the_reference(small):
    """In one step a sequence appends three tokens ("198"), one (" the"), or its own token
    (a declined call, or no call): the batch pads them and agrees with the reference."""
    partner = KeyedPartner({0: ("198",), 1: (" the",), 2: (), 3: (" the",)})
    runs = [generate(small, PROMPTS, partner, CascadeConfig(max_new_tokens=30, call_budget=0.5, reuse_cache=reuse))
            for reuse in (True, False)]
    for ours, reference in zip(*runs):
        assert (ours.token_ids, ours.from_partner) == (reference.token_ids, reference.from_partner)
    assert runs[0][0].multi_token_calls > 0 and runs[0][2].declined_calls == runs[0][2].calls > 0


def test_a_step_is_one_call_decision_for_all_unfinished_sequences(caller, monkeypatch):
    """The budget decides each step's sequences together (one level, `CallBudget.decide_step`)."""
    from evaluation.cascade import generate as module

    sizes = []

    class Recording(module.CallBudget):
        def decide_step(self, call_logits):
            sizes.append(len(call_logits))
            return super().decide_step(call_logits)

    monkeypatch.setattr(module, "CallBudget", Recording)
    gens = generate(caller, PROMPTS, EchoPartner(), CascadeConfig(max_new_tokens=12))
    assert sizes[0] == len(PROMPTS) and len(sizes) == max(g.steps for g in gens)
    assert sum(sizes) == sum(g.steps for g in gens)


# --- the partner's input ----------------------------------------------------------------

def test_our_checkpoint_partner_reads_after_our_eos(random_partner, foreign_partner, tok):
    """Our checkpoints were trained on `EOS d1 EOS d2 ...`: the partner's input starts with
    our EOS, as the small model's does; any other model's input is its tokenizer's ids."""
    from transformers import AutoModelForCausalLM

    text = "the cat sat on the"
    ours = TransformersBackend(random_partner)
    ids = ours.tokenizer(text).input_ids
    assert ours.tokenizer.eos_token_id == tok.eos_id and tok.eos_id not in ids
    reply = ours.top_tokens([PartnerQuery(0, text)])[0]
    assert reply.tokens_processed == 1 + len(ids)
    model = AutoModelForCausalLM.from_pretrained(random_partner)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[tok.eos_id] + ids])).logits[0, -1]
    top = penalize_rows(logits[None], [[tok.eos_id] + ids], 1.2)[0].topk(2).indices.tolist()
    assert reply.candidates == tuple(continuation_text(ours.tokenizer, ids, t) for t in top)
    foreign = TransformersBackend(foreign_partner)
    assert foreign.input_ids(text) == foreign.tokenizer(text).input_ids  # nothing added
    assert foreign.top_tokens([PartnerQuery(0, text)])[0].tokens_processed == len(foreign.input_ids(text))


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


# --- the vLLM backend's adapter (vLLM itself is not installed here) ----------------------
