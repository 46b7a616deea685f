"""Text-in, text-out LLM backends for FactScore's atomic-fact generator and support judge.

One small interface, `TextLLM.generate(prompts, max_new_tokens, stop) -> list[str]`,
always greedy (FActScore sampled its OpenAI models at temperature 0.7 and cached the
answers; greedy decoding makes our scores reproducible). Backends:

- `TransformersLLM`: any local Hugging Face causal LM directory, CPU or GPU.
- `VLLMLLM`: vLLM on a GPU (imported lazily; not installed on CPU machines).
- `OpenAICompatibleLLM`: a served model behind `/v1/completions` or `/v1/chat/completions`
  (`endpoint.py`: httpx, pooled connections, retries that honour Retry-After).
- `CachedLLM`: wraps any backend with an append-only JSONL cache, so a long run that
  crashes resumes without recomputing (FActScore keeps a pickle cache for the same reason).

A prompt longer than the model's context keeps its last tokens, as FActScore's
`factscore/clm.py` does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from tqdm.auto import tqdm

from evaluation.backends.endpoint import EndpointConfig, EndpointError, OpenAIEndpoint


@runtime_checkable
class TextLLM(Protocol):
    name: str  # identifies the model (and endpoint) in caches and reports

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        """Greedy completions of `prompts`, each cut before the first `stop` string."""
        ...


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (excluding) the earliest occurrence of any stop string."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


def _context_length(config: Any) -> int | None:
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def encode_prompt(tokenizer: Any, prompt: str, chat: bool, max_input_tokens: int | None) -> list[int]:
    """Token ids of `prompt` (as the single user message of the model's chat template when
    `chat`), keeping the last `max_input_tokens` ids when it is longer (FActScore clm.py)."""
    if chat:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt)["input_ids"]
    if max_input_tokens is not None and len(ids) > max_input_tokens:
        ids = ids[-max_input_tokens:]
    return list(ids)


class TransformersLLM:
    """A local Hugging Face causal LM, greedy, batched with left padding."""

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        dtype: str = "auto",
        batch_size: int = 8,
        chat: bool = False,
        max_context: int | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir}: not a Hugging Face model directory (no config.json)")
        self.name = f"transformers:{model_dir.resolve()}"
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, trust_remote_code=False, local_files_only=True, dtype=dtype
        ).to(self.device)
        self.model.eval()
        self.batch_size = batch_size
        self.chat = chat
        self.max_context = max_context or _context_length(self.model.config)

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        import torch
        from transformers import StoppingCriteriaList

        max_input = self.max_context - max_new_tokens if self.max_context else None
        encoded = [encode_prompt(self.tokenizer, p, self.chat, max_input) for p in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding per batch
        outputs: list[str] = [""] * len(encoded)
        starts = range(0, len(order), self.batch_size)
        for start in tqdm(starts, desc=f"generate ({len(prompts)} prompts)", leave=False, disable=len(starts) < 2):
            batch = order[start : start + self.batch_size]
            padded = self.tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            input_ids = padded["input_ids"].to(self.device)
            stopper = [_StopInGenerated(self.tokenizer, input_ids.shape[1], stop)] if stop else []
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids,
                    attention_mask=padded["attention_mask"].to(self.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tokenizer.pad_token_id,
                    stopping_criteria=StoppingCriteriaList(stopper),
                )
            for row, i in enumerate(batch):
                text = self.tokenizer.decode(out[row, input_ids.shape[1] :], skip_special_tokens=True)
                outputs[i] = truncate_at_stop(text, stop)
        return outputs


class _StopInGenerated:
    """Ends a row once its generated text (never the prompt, unlike `stop_strings`, which
    also matches across the prompt's end) contains a stop string."""

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Sequence[str]):
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, list(stop)

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)


class VLLMLLM:
    """vLLM (GPU only): all prompts in one call, prefix caching on (FActScore prompts share
    long demo prefixes). Prompts are tokenized and truncated here and passed as token ids."""

    def __init__(
        self,
        model_dir: str | Path,
        chat: bool = False,
        seed: int = 0,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
    ):
        try:
            from vllm import LLM
        except ImportError as e:
            raise ImportError("the vllm backend needs vLLM on a GPU machine: pip install '.[gpu]'") from e
        from transformers import AutoConfig

        model_dir = Path(model_dir)
        self.name = f"vllm:{model_dir.resolve()}"
        self.chat = chat
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=False)
        self.max_model_len = max_model_len or _context_length(config)
        self.llm = LLM(
            model=str(model_dir),
            tokenizer=str(model_dir),
            trust_remote_code=False,
            enable_prefix_caching=True,
            seed=seed,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=self.max_model_len,
            tensor_parallel_size=tensor_parallel_size,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop) or None)
        max_input = self.max_model_len - max_new_tokens if self.max_model_len else None
        requests = [{"prompt_token_ids": encode_prompt(self.tokenizer, p, self.chat, max_input)} for p in prompts]
        results = self.llm.generate(requests, params, use_tqdm=False)
        return [truncate_at_stop(r.outputs[0].text, stop) for r in results]


class OpenAICompatibleLLM:
    """A model served behind an OpenAI-compatible HTTP API (vLLM's server, llama.cpp, TGI,
    OpenAI), through `endpoint.OpenAIEndpoint` (pooled connections, concurrent requests,
    retries that honour Retry-After). `api="chat"` sends the prompt as the single user
    message of `/chat/completions` (FActScore's ChatGPT judge; the server applies the
    model's chat template); `api="completions"` sends it raw to `/completions` (FActScore's
    InstructGPT fact generator). `endpoint` holds `EndpointConfig`'s other fields
    (`api_key_env`, `concurrency`, `max_retries`, ...)."""

    def __init__(self, base_url: str, model: str, api: str = "chat", **endpoint: Any):
        if api not in ("chat", "completions"):
            raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
        self.endpoint = OpenAIEndpoint(EndpointConfig(base_url, model, **endpoint))
        self.api = api
        self.path = "chat/completions" if api == "chat" else "completions"
        self.name = f"openai-{api}:{base_url.rstrip('/')}:{model}"

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


class CachedLLM:
    """Any backend with an append-only JSONL cache keyed by (model, prompt, max_new_tokens,
    stop). Answers are written as soon as each call returns."""

    def __init__(self, llm: TextLLM, path: str | Path):
        self.llm = llm
        self.name = llm.name
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, str] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a crash: recompute it
                        continue
                    self._cache[row["key"]] = row["output"]

    def _key(self, prompt: str, max_new_tokens: int, stop: Sequence[str]) -> str:
        blob = json.dumps([self.llm.name, prompt, max_new_tokens, list(stop)])
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        keys = [self._key(p, max_new_tokens, stop) for p in prompts]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self._cache:
                first.setdefault(k, i)
        missing = list(first.values())
        if missing:
            answers = self.llm.generate([prompts[i] for i in missing], max_new_tokens, stop)
            with open(self.path, "a", encoding="utf-8") as f:
                for i, answer in zip(missing, answers):
                    self._cache[keys[i]] = answer
                    f.write(json.dumps({"key": keys[i], "output": answer}) + "\n")
                f.flush()
                os.fsync(f.fileno())
        return [self._cache[k] for k in keys]


BACKENDS = ("transformers", "vllm", "openai-chat", "openai-completions")


@dataclass(frozen=True)
class LLMConfig:
    """A backend from plain config values (the FactScore asset's judge fields)."""

    backend: str  # one of BACKENDS
    model: str  # a local model directory ("transformers", "vllm"), or the served model's name ("openai-*")
    base_url: str | None = None  # "openai-*": the endpoint, ending in /v1
    chat: bool = False  # "transformers", "vllm": prompts as the user message of the model's chat template (an instruct judge)
    device: str = "cpu"  # "transformers"
    tensor_parallel_size: int = 1  # "vllm": GPUs the model is split over
    api_key_env: str | None = "OPENAI_API_KEY"  # "openai-*": the environment variable holding the API key
    concurrency: int = 4  # "openai-*": requests in flight


def load_llm(config: LLMConfig, cache_path: str | Path | None = None) -> TextLLM:
    """The backend `config` names; with `cache_path`, its answers are cached there (`CachedLLM`)."""
    if config.backend == "transformers":
        llm: TextLLM = TransformersLLM(config.model, device=config.device, chat=config.chat)
    elif config.backend == "vllm":
        llm = VLLMLLM(config.model, chat=config.chat, tensor_parallel_size=config.tensor_parallel_size)
    elif config.backend in ("openai-chat", "openai-completions"):
        if not config.base_url:
            raise ValueError(f"backend {config.backend!r} needs base_url (e.g. http://127.0.0.1:8000/v1)")
        llm = OpenAICompatibleLLM(config.base_url, config.model, api=config.backend.removeprefix("openai-"),
                                  api_key_env=config.api_key_env, concurrency=config.concurrency)
    else:
        raise ValueError(f"unknown backend {config.backend!r}; use one of {BACKENDS}")
    return CachedLLM(llm, cache_path) if cache_path else llm
