"""Cascade partners (A.5): a model that, given the text so far, returns its two highest-scoring
next tokens as text. Backends: any local Hugging Face causal LM (`TransformersPartner`: a KV
cache per sequence, the queries of a call in one forward, `BatchedLM`), vLLM (`VLLMPartner`,
GPU) and an OpenAI-compatible server (`OpenAIPartner`); `make_partner` picks one by name.
The repetition penalty (HF/CTRL rule) is applied to the partner's logits over its own input
ids.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from evaluation.backends.batched_lm import BatchedLM
from evaluation.backends.endpoint import EndpointConfig, EndpointError, OpenAIEndpoint
from trainer.checkpoint import INFO_FILE


def penalize_rows(logits: torch.Tensor, seen_ids: Sequence[Sequence[int]], penalty: float) -> torch.Tensor:
    """HF/CTRL repetition penalty on [rows, vocab] logits: in row r, for every token id in
    `seen_ids[r]` (the ids already in its sequence), a positive logit is divided by
    `penalty`, a negative one multiplied."""
    if penalty == 1.0:
        return logits
    rows = torch.repeat_interleave(torch.arange(len(seen_ids)), torch.tensor([len(ids) for ids in seen_ids]))
    seen = torch.zeros(logits.shape, dtype=torch.bool)
    seen[rows, torch.tensor([i for ids in seen_ids for i in ids], dtype=torch.long)] = True
    seen = seen.to(logits.device)
    return torch.where(seen, torch.where(logits < 0, logits * penalty, logits / penalty), logits)


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


def leading_ids(model_dir: str | Path, tokenizer) -> list[int]:
    """What a local partner's input starts with before its tokenizer's ids: our EOS for one
    of our checkpoints (a folder with lacy.json, trained on `EOS d1 EOS d2 ...`, as the small
    model is), nothing for any other model (its tokenizer adds what it was trained with)."""
    return [tokenizer.eos_token_id] if (Path(model_dir) / INFO_FILE).exists() else []


def rank_candidates(logits: torch.Tensor, input_ids: Sequence[Sequence[int]], penalty: float, k: int = 2) -> list[list[int]]:
    """Per row of [rows, vocab] logits, the partner's top-k token ids after the repetition
    penalty over that row's input."""
    return penalize_rows(logits, input_ids, penalty).topk(k).indices.tolist()


class TransformersPartner:
    """Any local Hugging Face causal LM directory, with its own tokenizer, on CPU (or a given
    device). The queries of a call go through one forward (`BatchedLM`, `max_batch` rows at
    most), and each sequence keeps its KV cache across calls: a call reads only the tokens
    appended since the previous one, or from where its re-tokenization of the text diverges
    from what is cached. The input is `leading_ids` + the tokenizer's ids, of which it keeps
    the last `max_position_embeddings`."""

    name = "transformers"

    def __init__(self, model_dir: str | Path, *, repetition_penalty: float = 1.2, reuse_cache: bool = True,
                 device: str = "cpu", dtype: torch.dtype = torch.float32, max_batch: int = 0):
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
        model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False, dtype=dtype).to(device).eval()
        self.max_positions = int(getattr(model.config, "max_position_embeddings", 1 << 30))
        self.lead = leading_ids(model_dir, self.tokenizer)
        self.lm = BatchedLM(model, reuse_cache, max_batch)
        self.penalty = repetition_penalty

    def input_ids(self, text: str) -> list[int]:
        return (self.lead + self.tokenizer(text).input_ids)[-self.max_positions:]

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]:
        if not queries:
            return []
        inputs = [self.input_ids(q.text) for q in queries]
        logits, read = self.lm.logits([(q.key, ids) for q, ids in zip(queries, inputs)])
        tops = rank_candidates(logits, inputs, self.penalty)
        return [PartnerReply(tuple(continuation_text(self.tokenizer, ids, t) for t in top), n)
                for ids, top, n in zip(inputs, tops, read)]

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
        self.lead = leading_ids(model_dir, self.tokenizer)
        self.llm = LLM(model=str(model_dir), tokenizer=str(model_dir), trust_remote_code=False,
                       enable_prefix_caching=True, logprobs_mode="processed_logits",
                       max_logprobs=num_logprobs, **engine_kwargs)
        self.params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=num_logprobs,
                                     repetition_penalty=repetition_penalty, detokenize=False)
        # vLLM's default max_model_len is the model config's context; input + 1 new token must fit
        context = engine_kwargs.get("max_model_len") or AutoConfig.from_pretrained(model_dir).max_position_embeddings
        self.max_positions = int(context) - 1

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]:
        inputs = [(self.lead + self.tokenizer(q.text).input_ids)[-self.max_positions:] for q in queries]
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
