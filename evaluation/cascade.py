"""The cascade of A.5: greedy decoding of the small model with repetition penalty 1.2 and at
most 256 new tokens; whenever it emits `<CALL>`, the partner reads the text so far (prompt
included, `<CALL>` excluded) and its top token is appended in place of the call.

Choices where A.5 is silent or ambiguous (each is a field or a function below):
- Repetition penalty: the HF/CTRL rule (`repetition_penalty`); "already in the sequence"
  includes the prompt, as in `transformers.generate`. The small model's sequence starts
  with EOS (the document separator of the packed training data) before the prompt, and
  that EOS counts too. `<CALL>` is never in a sequence, so its logit is never penalized.
  The partner's logits get the same penalty over its own input ids (the paper states
  greedy decoding with repetition penalty 1.2 for its Qwen partner).
- When to call (`CascadeConfig.call_mode`): "budgeted" calls by `CallBudget`, one controller
  shared by all generations of a run, so every method is compared at one realized rate
  (`call_budget`, default 22%, the paper's realized equal budget); "native" calls exactly
  where `<CALL>` is the argmax of the small model's logits after the repetition penalty
  (section 4: "generates text autoregressively until a <CALL> token is generated"; the
  penalty never touches `<CALL>`, and on an exact tie the text token wins). With calls
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
- When both of the partner's top two tokens are missing, the call is "rejected": the small
  model's own best non-`<CALL>` token is used for that step (counted per generation).
- The partner never sees more than its context: its input keeps the last
  `max_position_embeddings` tokens. The small model stops at its own context length
  (`stop="context"`).
- Counting: a call is one decoding step; `call_rate` = calls / steps. Appended partner
  tokens count toward the 256 new tokens (the last append is cut at the limit).
"""

from __future__ import annotations

import bisect
import sys
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import sentencepiece as spm
import torch
from sentencepiece import sentencepiece_model_pb2 as sp_pb2
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from evaluation.checkpoint import LoadedCheckpoint
from evaluation.endpoint import EndpointConfig, EndpointError, OpenAIEndpoint
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


def repetition_penalty(logits: torch.Tensor, seen_ids: Sequence[int] | torch.Tensor, penalty: float) -> torch.Tensor:
    """HF/CTRL repetition penalty on a [vocab] logit vector: for every token id already in
    the sequence, a positive logit is divided by `penalty`, a negative one multiplied."""
    if penalty == 1.0:
        return logits
    seen = torch.as_tensor(seen_ids, dtype=torch.long, device=logits.device).unique()
    out = logits.clone()
    picked = out[seen]
    out[seen] = torch.where(picked < 0, picked * penalty, picked / penalty)
    return out


class CallBudget:
    """Equal call budgets (section 5.1, A.5): decides at each generated position whether to
    call, so that the realized rate over *all* generated positions of an evaluation (every
    generation shares one controller) stays at `budget`, while calls go where the `<CALL>`
    logit is relatively high.

    Running quantile: W holds the last `window` `<CALL>` logits seen (a window, because the
    logits drift during generation, A.5). The level adjusts to the realized rate by the
    deficit of calls so far (integral feedback on the count, so it cannot settle off target):

        d = budget * steps - calls,   q = clip(budget + d / horizon, 0, 1)

    A logit z calls iff its mid-rank among W and z lies in the top q:

        #{w in W : w > z} + (#{w in W : w = z} + 1) / 2  <=  q (|W| + 1)

    (ties share their ranks, so a flat stream calls when q >= 1/2, which the feedback makes
    happen at the budget's rate.) A stream that drifts up tops W at every step and calls
    until the surplus pushes q to 0; one that drifts down calls only when the deficit has
    raised q near 1; both settle within a bounded number of calls of the budget.

    Last resort (`guarded`): when the decision would leave the cumulative count more than
    one call outside [budget - tolerance, budget + tolerance] of the steps, it is flipped.
    """

    def __init__(self, budget: float = 0.22, tolerance: float = 0.01, window: int = 1024, horizon: float = 8.0):
        if not 0.0 <= budget <= 1.0:
            raise ValueError(f"call budget {budget} is not in [0, 1]")
        self.budget, self.tolerance, self.horizon = budget, tolerance, horizon
        self.recent: deque[float] = deque(maxlen=window)
        self.sorted: list[float] = []
        self.steps = self.calls = self.guarded = 0

    @property
    def level(self) -> float:
        return min(max(self.budget + (self.budget * self.steps - self.calls) / self.horizon, 0.0), 1.0)

    @property
    def rate(self) -> float:
        return self.calls / max(self.steps, 1)

    def decide(self, call_logit: float) -> bool:
        z = float(call_logit)
        lo, hi = bisect.bisect_left(self.sorted, z), bisect.bisect_right(self.sorted, z)
        mid_rank = len(self.sorted) - hi + (hi - lo + 1) / 2
        call = mid_rank <= self.level * (len(self.sorted) + 1)
        steps = self.steps + 1
        if not call and self.calls < (self.budget - self.tolerance) * steps - 1:
            call, self.guarded = True, self.guarded + 1
        elif call and self.calls + 1 > (self.budget + self.tolerance) * steps + 1:
            call, self.guarded = False, self.guarded + 1
        self._remember(z)
        self.steps, self.calls = steps, self.calls + call
        return call

    def _remember(self, z: float) -> None:
        if len(self.recent) == self.recent.maxlen:
            self.sorted.pop(bisect.bisect_left(self.sorted, self.recent[0]))
        self.recent.append(z)
        bisect.insort(self.sorted, z)


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n]) != np.asarray(b[:n]))
    return int(diff[0]) if len(diff) else n


class CachedLM:
    """A causal LM that keeps, per sequence key, the keys/values of the token ids it has
    read. Given a sequence's ids it rolls its cache back to the longest common prefix with
    what it holds and reads only the rest (at least the last token, whose logits are
    needed). With `reuse_cache=False` it re-reads every sequence whole: the reference the
    cached path must agree with, and the benchmark's baseline."""

    def __init__(self, model: PreTrainedModel, reuse_cache: bool = True):
        self.model = model
        self.reuse_cache = reuse_cache
        self._held: dict[Hashable, tuple[list[int], object]] = {}

    @torch.no_grad()
    def logits(self, key: Hashable, ids: Sequence[int]) -> tuple[torch.Tensor, int]:
        """Logits [new positions, vocab] of the positions read, and how many were read."""
        if not ids:
            raise ValueError("empty input")
        held_ids, cache = self._held.get(key, ([], None))
        start = min(common_prefix(held_ids, ids), len(ids) - 1) if self.reuse_cache else 0
        if start == 0:
            cache = None
        elif start < cache.get_seq_length():
            cache.crop(start)
        device = self.model.device
        out = self.model(input_ids=torch.tensor([list(ids[start:])], device=device), past_key_values=cache,
                         use_cache=self.reuse_cache)
        if self.reuse_cache:
            self._held[key] = (list(ids), out.past_key_values)
        return out.logits[0].float(), len(ids) - start

    def release(self, key: Hashable) -> None:
        self._held.pop(key, None)


@dataclass(frozen=True)
class PartnerQuery:
    key: Hashable  # one per generated sequence: the partner may keep a cache per key
    text: str  # the partner's whole input: its prefix (e.g. the RAG prompt) + the text so far


@dataclass(frozen=True)
class PartnerReply:
    candidates: tuple[str, ...]  # text of the partner's top tokens as a continuation, best first
    tokens_processed: int  # partner input tokens read (not served from a cache) for this call


class Partner(Protocol):
    """A cascade partner: for each query, its two highest-scoring next tokens."""

    name: str

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]: ...

    def release(self, key: Hashable) -> None: ...


def continuation_text(tokenizer, context_ids: Sequence[int], token_id: int, window: int = 8) -> str:
    """The text `token_id` adds after `context_ids` (spaces included, as the partner's
    tokenizer decodes it in context); "" for special tokens and undecodable pieces."""
    if token_id in set(tokenizer.all_special_ids):
        return ""
    tail = list(context_ids[-window:])
    kwargs = {"skip_special_tokens": True, "clean_up_tokenization_spaces": False}
    before = tokenizer.decode(tail, **kwargs)
    after = tokenizer.decode(tail + [int(token_id)], **kwargs)
    return after[len(before):] if after.startswith(before) else ""


def rank_candidates(logits: torch.Tensor, input_ids: Sequence[int], penalty: float, k: int = 2) -> list[int]:
    """The partner's top-k token ids after the repetition penalty over its input."""
    return repetition_penalty(logits, input_ids, penalty).topk(k).indices.tolist()


class TransformersPartner:
    """Any local Hugging Face causal LM directory, with its own tokenizer, on CPU (or a given
    device). Keeps its KV cache per sequence across calls (`CachedLM`): a call reads only
    the tokens appended since the previous one, or from where its re-tokenization of the
    text diverges from what is cached."""

    name = "transformers"

    def __init__(self, model_dir: str | Path, *, repetition_penalty: float = 1.2, reuse_cache: bool = True,
                 device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False, dtype=dtype).to(device).eval()
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        self.lm = CachedLM(model, reuse_cache)
        self.penalty = repetition_penalty

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]:
        replies = []
        for q in queries:
            ids = self.tokenizer(q.text).input_ids[-self.max_positions:]
            logits, processed = self.lm.logits(q.key, ids)
            top = rank_candidates(logits[-1], ids, self.penalty)
            replies.append(PartnerReply(tuple(continuation_text(self.tokenizer, ids, t) for t in top), processed))
        return replies

    def release(self, key: Hashable) -> None:
        self.lm.release(key)


class VLLMPartner:
    """A partner served by vLLM (GPU): all queries of a decoding step go to the engine as one
    batch, and automatic prefix caching (`enable_prefix_caching=True`) serves the part of
    each input it has seen, so a call computes only the new tokens (at vLLM's block
    granularity); `tokens_processed` = prompt tokens - `RequestOutput.num_cached_tokens`.

    The repetition penalty is vLLM's own (`SamplingParams.repetition_penalty`: the same
    HF/CTRL rule over the prompt's ids), and the engine returns its top `num_logprobs`
    logits after the penalty (`logprobs_mode="processed_logits"`; for greedy requests these
    are the logits the argmax is taken over), so the top two are exact.

    Not run on this machine: vLLM is not installed here (GPU only, `pip install .[gpu]`).
    """

    name = "vllm"

    def __init__(self, model_dir: str | Path, *, repetition_penalty: float = 1.2, num_logprobs: int = 2,
                 **engine_kwargs):
        from vllm import LLM, SamplingParams  # lazy: GPU machines only

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        self.llm = LLM(model=str(model_dir), tokenizer=str(model_dir), trust_remote_code=False,
                       enable_prefix_caching=True, logprobs_mode="processed_logits",
                       max_logprobs=num_logprobs, **engine_kwargs)
        self.params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=num_logprobs,
                                     repetition_penalty=repetition_penalty, detokenize=False)
        # vLLM's default max_model_len is the model config's context; input + 1 new token must fit
        context = engine_kwargs.get("max_model_len") or AutoConfig.from_pretrained(model_dir).max_position_embeddings
        self.max_positions = int(context) - 1

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]:
        inputs = [self.tokenizer(q.text).input_ids[-self.max_positions:] for q in queries]
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in inputs], self.params, use_tqdm=False)
        replies = []
        for ids, out in zip(inputs, outputs):
            top = out.outputs[0].logprobs[0]  # {token_id: Logprob}; .logprob holds the penalized logit here
            best = sorted(top, key=lambda t: top[t].logprob, reverse=True)[:2]
            cached = out.num_cached_tokens or 0
            replies.append(PartnerReply(tuple(continuation_text(self.tokenizer, ids, t) for t in best), len(ids) - cached))
        return replies

    def release(self, key: Hashable) -> None:
        """vLLM's prefix cache is shared and evicts by itself."""


class OpenAIPartner:
    """A partner served behind an OpenAI-compatible `/completions` endpoint (vLLM's or
    SGLang's server; `endpoint.py`: pooled connections, retries that honour Retry-After).
    Each call is a one-token greedy completion of the partner's input asking for the top
    `num_logprobs` next tokens (`logprobs`); the queries of a decoding step are sent
    concurrently (`concurrency`), and the server's prefix cache serves what it has seen.

    - Candidates: the server's greedy token, then the other top tokens by log-probability.
      The repetition penalty goes to the server as vLLM's sampling parameter
      `repetition_penalty` (omitted at 1.0, so the request is plain OpenAI API), so it
      decides the greedy token; vLLM returns log-probabilities before penalties unless
      started with `--logprobs-mode processed_logprobs`, which ranks the second choice
      after the penalty too, as the local backends do.
    - Candidate texts are the server's token strings: for byte-level BPE partners (Qwen,
      Llama 3) the token's text with its leading space, as `continuation_text` gives; a
      token that is part of a UTF-8 character comes back as U+FFFD and counts as missing.
      SentencePiece partners (Llama 2) lose a word's leading space in these strings: serve
      them with the "vllm" backend, which decodes each token in context.
      The OpenAI format keys the top log-probs by text, so tokens with the same text are
      one entry: when the top two are both U+FFFD pieces (the local backends reject that
      call), the second candidate here is the next token with another text.
    - `tokens_processed` = `usage.prompt_tokens` - `usage.prompt_tokens_details.cached_tokens`
      (vLLM reports the latter with `--enable-prompt-tokens-details`; without it every
      prompt token counts).
    - `max_input_tokens`: the server keeps the input's last tokens (vLLM's
      `truncate_prompt_tokens`), as the local backends keep their context's worth.
    """

    name = "openai"

    def __init__(self, model: str, *, base_url: str, repetition_penalty: float = 1.2, num_logprobs: int = 5,
                 max_input_tokens: int | None = None, **endpoint):
        self.endpoint = OpenAIEndpoint(EndpointConfig(base_url, model, **endpoint))
        self.body: dict = {"model": model, "max_tokens": 1, "temperature": 0.0, "logprobs": num_logprobs}
        if repetition_penalty != 1.0:
            self.body["repetition_penalty"] = repetition_penalty
        if max_input_tokens is not None:
            self.body["truncate_prompt_tokens"] = max_input_tokens

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]:
        payloads = self.endpoint.post_all("completions", [{**self.body, "prompt": q.text} for q in queries])
        return [self._reply(payload) for payload in payloads]

    def _reply(self, payload: dict) -> PartnerReply:
        try:
            logprobs = payload["choices"][0]["logprobs"]
            greedy, top = logprobs["tokens"][0], logprobs["top_logprobs"][0]
            usage = payload["usage"]
            cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            processed = int(usage["prompt_tokens"]) - int(cached)
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError(f"{self.endpoint.url('completions')}: no logprobs or usage in "
                                f"{str(payload)[:500]}") from e
        others = sorted((t for t in top if t != greedy), key=lambda t: top[t], reverse=True)
        return PartnerReply((greedy, *others[:1]), processed)

    def release(self, key: Hashable) -> None:
        """The server's prefix cache is shared and evicts by itself."""


def make_partner(backend: str, model: str | Path, **kwargs) -> Partner:
    """`model`: a local model directory ("transformers", "vllm") or the served model's name
    ("openai", with `base_url=`); `kwargs` go to the backend's class."""
    backends = {"transformers": TransformersPartner, "vllm": VLLMPartner, "openai": OpenAIPartner}
    if backend not in backends:
        raise ValueError(f"unknown partner backend {backend!r}; choose from {sorted(backends)}")
    return backends[backend](model, **kwargs)


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
    reuse_cache: bool = True  # False re-reads whole sequences (small model and partner)

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
    guarded_steps: int = 0  # steps whose call decision `CallBudget`'s last-resort guard flipped
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
    last_logits: torch.Tensor
    gen: Generation
    pending: list[int] = field(default_factory=list)
    pending_from_partner: bool = False
    done: bool = False


def _calls(seq: _Sequence, config: CascadeConfig, budget: CallBudget, call_id: int) -> bool:
    if not config.calls:
        return False
    if config.call_mode == "native":
        return int(repetition_penalty(seq.last_logits, seq.ids, config.repetition_penalty).argmax()) == call_id
    guarded = budget.guarded
    call = budget.decide(float(seq.last_logits[call_id]))
    seq.gen.guarded_steps += budget.guarded - guarded
    return call


def _own_token(seq: _Sequence, call_id: int, penalty: float) -> int:
    """The small model's greedy token with the `<CALL>` logit at -inf (it is the last id)."""
    return int(repetition_penalty(seq.last_logits[:call_id], seq.ids, penalty).argmax())


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
    lm = CachedLM(small.model, config.reuse_cache)
    token_map = PartnerTokenMap(tok, config.max_partner_tokens)
    prefixes = partner_prefixes or [""] * len(prompts)
    budget = CallBudget(config.call_budget)
    seqs = []
    for key, (prompt, prefix) in enumerate(zip(prompts, prefixes, strict=True)):
        ids = [tok.eos_id] + tok.encode(prompt).tolist()
        if len(ids) >= small.max_positions:
            raise ValueError(f"prompt {key} has {len(ids)} tokens; the model's context is {small.max_positions}")
        logits, _ = lm.logits(key, ids)
        seqs.append(_Sequence(key, ids, len(ids), prefix, logits[-1], Generation(prompt)))
    active, step = list(seqs), 0
    while active:
        step += 1
        callers = []
        for seq in active:
            seq.gen.steps += 1
            if _calls(seq, config, budget, call_id):
                callers.append(seq)
            else:
                seq.pending, seq.pending_from_partner = [_own_token(seq, call_id, config.repetition_penalty)], False
        if callers:
            queries = [PartnerQuery(s.key, s.partner_prefix + tok.decode(s.ids[1:])) for s in callers]
            for seq, reply in zip(callers, partner.top_tokens(queries), strict=True):
                _take_partner_token(seq, reply, token_map, call_id, config.repetition_penalty)
        for seq in active:
            _advance(seq, lm, tok.eos_id, config.max_new_tokens, small.max_positions)
        active = [s for s in active if not s.done]
        if log and step % 32 == 0:
            log(f"cascade: step {step}, {len(active)} of {len(seqs)} sequences unfinished")
    for seq in seqs:
        lm.release(seq.key)
        if partner is not None:
            partner.release(seq.key)
        _finish(seq, tok)
    return [s.gen for s in seqs]


def _take_partner_token(seq: _Sequence, reply: PartnerReply, token_map: PartnerTokenMap, call_id: int,
                        penalty: float) -> None:
    gen = seq.gen
    gen.calls += 1
    gen.partner_tokens_processed.append(reply.tokens_processed)
    for rank, text in enumerate(reply.candidates[:2]):
        ours = token_map.to_ours(text)
        if ours is not None:
            gen.second_choice_calls += rank == 1
            gen.multi_token_calls += len(ours) > 1
            seq.pending, seq.pending_from_partner = ours, True
            return
    gen.rejected_calls += 1
    seq.pending, seq.pending_from_partner = [_own_token(seq, call_id, penalty)], False


def _advance(seq: _Sequence, lm: CachedLM, eos_id: int, max_new_tokens: int, max_positions: int) -> None:
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
    else:
        seq.last_logits = lm.logits(seq.key, seq.ids)[0][-1]


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
        "guarded_steps": sum(g.guarded_steps for g in generations),
        "mean_partner_tokens_per_call": float(np.mean(processed)) if processed else 0.0,
        "mean_new_tokens": float(np.mean([len(g.token_ids) for g in generations])) if generations else 0.0,
    }


def render(gen: Generation, color: bool | None = None) -> str:
    """The prompt and generation with the partner's tokens marked as in Figure 4: ANSI gray
    on a terminal, [[...]] otherwise."""
    color = sys.stdout.isatty() if color is None else color
    mark = (lambda s: f"\x1b[90m{s}\x1b[0m") if color else (lambda s: f"[[{s}]]")
    return gen.prompt + "".join(mark(text) if partner else text for text, partner in gen.segments)
