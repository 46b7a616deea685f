"""A model served behind an OpenAI-compatible HTTP API (vLLM's server, SGLang, llama.cpp,
TGI, OpenAI), through `endpoint.OpenAIEndpoint` (pooled connections, concurrent requests,
retries that honour Retry-After): judge generation (`generate`) and a cascade partner's
next tokens (`top_tokens`) over one connection pool."""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from typing import Any

from evaluation.backends.endpoint import EndpointConfig, EndpointError, OpenAIEndpoint
from evaluation.backends.partners import PartnerQuery, PartnerReply
from evaluation.backends.text import truncate_at_stop

APIS = ("chat", "completions")


class OpenAIBackend:
    """One served model; `endpoint` holds `EndpointConfig`'s other fields (`api_key_env`,
    `concurrency`, `max_retries`, ...).

    `generate` (greedy, temperature 0): `api="chat"` sends each prompt as the single user
    message of `/chat/completions` (FActScore's ChatGPT judge; the server applies the model's
    chat template); `api="completions"` sends it raw to `/completions` (FActScore's
    InstructGPT fact generator). At most 4 stop strings (the OpenAI API's limit).

    `top_tokens`: each query is a one-token greedy completion of the partner's input on
    `/completions` asking for the top `num_logprobs` next tokens (`logprobs`); the queries
    of a decoding step are sent concurrently, and the server's prefix cache serves what it
    has seen.

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

    def __init__(self, model: str, *, base_url: str, api: str = "chat", repetition_penalty: float = 1.2,
                 num_logprobs: int = 5, max_input_tokens: int | None = None, **endpoint: Any):
        if api not in APIS:
            raise ValueError(f"api must be one of {APIS}, got {api!r}")
        self.endpoint = OpenAIEndpoint(EndpointConfig(base_url, model, **endpoint))
        self.api = api
        self.path = "chat/completions" if api == "chat" else "completions"
        self.name = f"openai-{api}:{base_url.rstrip('/')}:{model}"
        self.top_body: dict[str, Any] = {"model": model, "max_tokens": 1, "temperature": 0.0, "logprobs": num_logprobs}
        if repetition_penalty != 1.0:
            self.top_body["repetition_penalty"] = repetition_penalty
        if max_input_tokens is not None:
            self.top_body["truncate_prompt_tokens"] = max_input_tokens

    # ---------------------------------------------------------------- judge generation

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        bodies = [self._body(p, max_new_tokens, stop) for p in prompts]
        return [truncate_at_stop(self._text(payload), stop) for payload in self.endpoint.post_all(self.path, bodies)]

    def _body(self, prompt: str, max_new_tokens: int, stop: Sequence[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.endpoint.config.model, "max_tokens": max_new_tokens, "temperature": 0.0}
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        if stop:
            body["stop"] = list(stop)[:4]  # the OpenAI API accepts at most 4
        return body

    def _text(self, payload: dict[str, Any]) -> str:
        try:
            choice = payload["choices"][0]
            text = choice["message"]["content"] if self.api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError(f"{self.endpoint.url(self.path)}: unexpected response "
                                f"{json.dumps(payload)[:500]}") from e
        return text or ""

    # ---------------------------------------------------------------- partner next tokens

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]:
        payloads = self.endpoint.post_all("completions", [{**self.top_body, "prompt": q.text} for q in queries])
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
