"""The cascade of A.5: greedy decoding of the small model with repetition penalty 1.2 and at
most 256 new tokens; whenever it emits `<CALL>`, the partner reads the text so far (prompt
included, `<CALL>` excluded) and its top token is appended in place of the call.

Choices where A.5 is silent or ambiguous (each is a field or a function below):
- Repetition penalty: the HF/CTRL rule (`penalize_rows`); "already in the sequence"
  includes the prompt, as in `transformers.generate`. The small model's sequence starts
  with EOS (the document separator of the packed training data) before the prompt, and
  that EOS counts too. `<CALL>` is never in a sequence, so its logit is never penalized.
  The partner's logits get the same penalty over its own input ids (the paper states
  greedy decoding with repetition penalty 1.2 for its Qwen partner).
- When to call (`CascadeConfig.call_mode`): "budgeted" calls by `CallBudget`, one controller
  shared by all generations of a run, so every method is compared at one realized rate
  (`call_budget`, default 22%, the paper's realized equal budget); the unfinished sequences
  of a decoding step are decided together against one level (`CallBudget.lockstep`: a
  horizon of 8 steps), so the calls go to the highest logits over the whole run rather than
  22% of each step. "native" calls exactly where `<CALL>` is the argmax of the small
  model's logits after the repetition penalty (section 4: "generates text autoregressively
  until a <CALL> token is generated"; the penalty never touches `<CALL>`, and on an exact
  tie the text token wins). With calls
  disabled (`CascadeConfig.calls=False`, `--no-call`) the `<CALL>` logit is -inf: the small
  model picks the argmax of the other tokens.
- "Missing from our vocabulary" (`PartnerTokenMap.to_ours`): the partner token's text is
  empty (a special token), contains U+FFFD (part of a UTF-8 character), or our tokenizer
  can encode it only with the unknown piece or byte-fallback pieces of non-ASCII bytes (a
  character our vocabulary lacks). ASCII byte pieces such as "\\n" are ordinary tokens of
  our vocabulary that the small model itself emits.
- A partner token that our tokenizer splits is appended whole if it is at most
  `max_partner_tokens` (3) of our tokens (the paper saw at most 3). One that needs more is
  treated as missing, like an unknown one: appending a fragment would write text the
  partner never meant.
- When both of the partner's top two tokens are missing, the call is "rejected"; when the
  partner offers no token at all (the testbed's knowledge-base partner, when no value is
  due), it is "declined". Either way the small model's own best non-`<CALL>` token is used
  for that step, and the call still counts as a call (it spent budget); both are counted
  per generation (`rejected_calls`, `declined_calls`).
- The partner never sees more than its context: its input keeps the last
  `max_position_embeddings` tokens. The small model stops at its own context length
  (`stop="context"`). A partner that is one of our checkpoints reads our EOS before its
  input, as the small model does (`partners.leading_ids`).
- Decoding is batched: each step reads all unfinished sequences in one forward of the small
  model (`BatchedLM`, a KV cache per sequence) and sends all of the step's calls to the
  partner as one batch. `reuse_cache=False` reads each sequence whole and alone (small
  model and local partner): the reference the batched path must agree with.
- Counting: a call is one decoding step; `call_rate` = calls / steps. Appended partner
  tokens count toward the 256 new tokens (the last append is cut at the limit).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import sentencepiece as spm
import torch
from sentencepiece import sentencepiece_model_pb2 as sp_pb2

from evaluation.backends.batched_lm import BatchedLM
from evaluation.backends.partners import Partner, PartnerQuery, PartnerReply, penalize_rows
from evaluation.cascade.budget import CallBudget
from evaluation.checkpoint import LoadedCheckpoint
from pipelines.tokenizer import Tokenizer

# A.5, "RAG Prompt for Qwen 3 32B", as printed in the paper, followed by the text so far
# ({original_text}). The extracted paper text shows the chat markers as "<| im_start|>"; the
# space is an extraction artifact (Qwen's special tokens are "<|im_start|>"/"<|im_end|>").
# The 4-space indents and the line break inside "background information:" are kept as
# printed (whether they are PDF line wrapping cannot be told from the paper). The paper's
# comment says there is no "\n" between the article and <|im_end|>.
RAG_TEMPLATE = """<|im_start|>system
    You are an assistant who writes biographies of famous people and events.
    Continue any given text naturally and fluently.<|im_end|>
<|im_start|>user
    Write a short biography about {person_name}. Here is some background
    information:
{wiki_content}<|im_end|>
<|im_start|>assistant
<think>

</think>

"""
RAG_MAX_CHARS = 8000


def rag_prefix(person_name: str, wiki_content: str | None) -> str:
    """The partner's RAG prompt of A.5 up to {original_text}; the article is truncated to
    8,000 characters. Without an article (the paper: "no background information was
    provided") the template is kept with empty background."""
    return RAG_TEMPLATE.format(person_name=person_name, wiki_content=(wiki_content or "")[:RAG_MAX_CHARS])


class PartnerTokenMap:
    """Maps the text of a partner token to our token ids (rules in the module docstring).
    Encodes with our SentencePiece model without its dummy prefix: a continuation " Paris"
    becomes "▁Paris", "ris" stays "ris"."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int = 3):
        proto = sp_pb2.ModelProto()
        proto.ParseFromString(tokenizer.path.read_bytes())
        proto.normalizer_spec.add_dummy_prefix = False
        self.sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
        self.unk_id = self.sp.unk_id()
        self.max_tokens = max_tokens
        self.foreign = {i for i in range(self.sp.get_piece_size())
                        if self.sp.is_byte(i) and int(self.sp.id_to_piece(i)[3:5], 16) >= 0x80}

    def to_ours(self, text: str) -> list[int] | None:
        """Our token ids for the partner token's text, or None when it is missing."""
        if not text or "\ufffd" in text:
            return None
        ids = self.sp.encode(text)
        if any(i == self.unk_id or i in self.foreign for i in ids) or len(ids) > self.max_tokens:
            return None
        return ids


CALL_MODES = ("budgeted", "native")


@dataclass(frozen=True)
class CascadeConfig:
    max_new_tokens: int = 256
    repetition_penalty: float = 1.2
    call_budget: float = 0.22  # section 5.1: "an equal call budget of 22% of tokens" (call_mode "budgeted")
    call_mode: str = "budgeted"  # or "native": call where <CALL> is the argmax
    calls: bool = True  # False: the <CALL> logit is -inf (no partner needed)
    max_partner_tokens: int = 3
    reuse_cache: bool = True  # False re-reads whole sequences, one per forward (the reference)
    max_batch: int = 0  # most sequences in one forward of the small model (0: all)

    def __post_init__(self):
        if self.call_mode not in CALL_MODES:
            raise ValueError(f"unknown call mode {self.call_mode!r}; choose from {', '.join(CALL_MODES)}")


@dataclass
class Generation:
    """One generation and its call statistics."""

    prompt: str
    text: str = ""  # the generated continuation as the model wrote it: prompt + text is the whole output
    token_ids: list[int] = field(default_factory=list)
    from_partner: list[bool] = field(default_factory=list)  # per generated token
    segments: list[tuple[str, bool]] = field(default_factory=list)  # text pieces, True = partner's
    steps: int = 0
    calls: int = 0
    partner_tokens_processed: list[int] = field(default_factory=list)  # per call
    second_choice_calls: int = 0
    multi_token_calls: int = 0
    rejected_calls: int = 0  # both partner choices missing: the small model's token was used
    declined_calls: int = 0  # the partner offered no token: the small model's token was used
    stop: str = ""  # "eos", "max_new_tokens" or "context"

    @property
    def call_rate(self) -> float:
        return self.calls / max(self.steps, 1)

    @property
    def partner_token_fraction(self) -> float:
        return sum(self.from_partner) / max(len(self.from_partner), 1)

    @property
    def mean_partner_tokens_per_call(self) -> float:
        return float(np.mean(self.partner_tokens_processed)) if self.partner_tokens_processed else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "call_rate": self.call_rate, "partner_token_fraction": self.partner_token_fraction,
                "mean_partner_tokens_per_call": self.mean_partner_tokens_per_call}


@dataclass
class _Sequence:
    key: int
    ids: list[int]  # [EOS] + prompt + generated
    n_prompt: int  # len([EOS] + prompt)
    partner_prefix: str
    gen: Generation
    pending: list[int] = field(default_factory=list)
    pending_from_partner: bool = False
    done: bool = False


def _call_decisions(logits: torch.Tensor, penalized: torch.Tensor, config: CascadeConfig, budget: CallBudget,
                    call_id: int) -> list[bool]:
    """Whether each sequence of a step calls, from its logits before and after the penalty."""
    if not config.calls:
        return [False] * len(logits)
    if config.call_mode == "native":
        return (penalized.argmax(1) == call_id).tolist()
    return budget.decide_step(logits[:, call_id].cpu().numpy()).tolist()


def _token_texts(tok: Tokenizer, ids: Sequence[int], n_prompt: int) -> list[str]:
    """The text each generated token adds, decoded in context (so spaces are right)."""
    texts, before = [], tok.decode(ids[1:n_prompt])
    for k in range(n_prompt, len(ids)):
        after = tok.decode(ids[1:k + 1])
        texts.append(after[len(before):])
        before = after
    return texts


def _finish(seq: _Sequence, tok: Tokenizer) -> None:
    gen = seq.gen
    gen.token_ids = seq.ids[seq.n_prompt:]
    texts = _token_texts(tok, seq.ids, seq.n_prompt)
    # decoded after the prompt, not alone: SentencePiece drops a leading space of the first piece
    gen.text = "".join(texts)
    for text, partner in zip(texts, gen.from_partner):
        if gen.segments and gen.segments[-1][1] == partner:
            gen.segments[-1] = (gen.segments[-1][0] + text, partner)
        else:
            gen.segments.append((text, partner))


@torch.no_grad()
def generate(
    small: LoadedCheckpoint,
    prompts: Sequence[str],
    partner: Partner | None = None,
    config: CascadeConfig = CascadeConfig(),
    partner_prefixes: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Generation]:
    """Run the cascade on all `prompts` in lockstep: at every step each unfinished sequence
    either takes the small model's token or calls, and all calls of the step go to the
    partner as one batch. `partner_prefixes[i]` is put before the text of prompt i in the
    partner's input (e.g. `rag_prefix(...)`)."""
    if config.calls and partner is None:
        raise ValueError("calls are enabled but no partner is given (use calls=False / --no-call)")
    torch.set_flush_denormal(True)
    tok, call_id = small.tokenizer, small.call_id
    lm = BatchedLM(small.model, config.reuse_cache, config.max_batch)
    token_map = PartnerTokenMap(tok, config.max_partner_tokens)
    prefixes = partner_prefixes or [""] * len(prompts)
    budget = CallBudget.lockstep(config.call_budget, len(prompts))
    seqs = []
    for key, (prompt, prefix) in enumerate(zip(prompts, prefixes, strict=True)):
        ids = [tok.eos_id] + tok.encode(prompt).tolist()
        if len(ids) >= small.max_positions:
            raise ValueError(f"prompt {key} has {len(ids)} tokens; the model's context is {small.max_positions}")
        seqs.append(_Sequence(key, ids, len(ids), prefix, Generation(prompt)))
    active, step = list(seqs), 0
    while active:
        step += 1
        logits, _ = lm.logits([(s.key, s.ids) for s in active])
        penalized = penalize_rows(logits, [s.ids for s in active], config.repetition_penalty)
        own = penalized[:, :call_id].argmax(1).tolist()  # <CALL> is the last id
        callers = []
        for seq, token, call in zip(active, own, _call_decisions(logits, penalized, config, budget, call_id)):
            seq.gen.steps += 1
            seq.pending, seq.pending_from_partner = [token], False
            if call:
                callers.append(seq)
        if callers:
            queries = [PartnerQuery(s.key, s.partner_prefix + tok.decode(s.ids[1:])) for s in callers]
            for seq, reply in zip(callers, partner.top_tokens(queries), strict=True):
                _take_partner_token(seq, reply, token_map)
        for seq in active:
            _advance(seq, tok.eos_id, config.max_new_tokens, small.max_positions)
        active = [s for s in active if not s.done]
        if log and step % 32 == 0:
            log(f"cascade: step {step}, {len(active)} of {len(seqs)} sequences unfinished")
    for seq in seqs:
        lm.release(seq.key)
        if partner is not None:
            partner.release(seq.key)
        _finish(seq, tok)
    return [s.gen for s in seqs]


def _take_partner_token(seq: _Sequence, reply: PartnerReply, token_map: PartnerTokenMap) -> None:
    """The partner's first candidate our vocabulary can write replaces the small model's
    pending token; without one the call is declined (no candidates) or rejected."""
    gen = seq.gen
    gen.calls += 1
    gen.partner_tokens_processed.append(reply.tokens_processed)
    if not reply.candidates:
        gen.declined_calls += 1
        return
    for rank, text in enumerate(reply.candidates[:2]):
        ours = token_map.to_ours(text)
        if ours is not None:
            gen.second_choice_calls += rank == 1
            gen.multi_token_calls += len(ours) > 1
            seq.pending, seq.pending_from_partner = ours, True
            return
    gen.rejected_calls += 1


def _advance(seq: _Sequence, eos_id: int, max_new_tokens: int, max_positions: int) -> None:
    if seq.pending == [eos_id] and not seq.pending_from_partner:
        seq.done, seq.gen.stop = True, "eos"
        return
    room = min(max_new_tokens - len(seq.gen.from_partner), max_positions - len(seq.ids))
    new = seq.pending[:room]
    seq.ids += new
    seq.gen.from_partner += [seq.pending_from_partner] * len(new)
    if len(seq.gen.from_partner) >= max_new_tokens:
        seq.done, seq.gen.stop = True, "max_new_tokens"
    elif len(seq.ids) >= max_positions:
        seq.done, seq.gen.stop = True, "context"


def summarize(generations: Sequence[Generation]) -> dict:
    """Aggregate call statistics over generations (for reports)."""
    calls = sum(g.calls for g in generations)
    processed = [n for g in generations for n in g.partner_tokens_processed]
    return {
        "generations": len(generations),
        "mean_call_rate": float(np.mean([g.call_rate for g in generations])) if generations else 0.0,
        "call_rate": calls / max(sum(g.steps for g in generations), 1),
        "partner_token_fraction": sum(sum(g.from_partner) for g in generations)
        / max(sum(len(g.from_partner) for g in generations), 1),
        "calls": calls,
        "second_choice_calls": sum(g.second_choice_calls for g in generations),
        "multi_token_calls": sum(g.multi_token_calls for g in generations),
        "rejected_calls": sum(g.rejected_calls for g in generations),
        "declined_calls": sum(g.declined_calls for g in generations),
        "mean_partner_tokens_per_call": float(np.mean(processed)) if processed else 0.0,
        "mean_new_tokens": float(np.mean([len(g.token_ids) for g in generations])) if generations else 0.0,
    }


def render(gen: Generation, color: bool | None = None) -> str:
    """The prompt and generation with the partner's tokens marked as in Figure 4: ANSI gray
    on a terminal, [[...]] otherwise."""
    color = sys.stdout.isatty() if color is None else color
    mark = (lambda s: f"\x1b[90m{s}\x1b[0m") if color else (lambda s: f"[[{s}]]")
    return gen.prompt + "".join(mark(text) if partner else text for text, partner in gen.segments)
