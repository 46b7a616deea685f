"""The one way callers get a model of the backend family: a `BackendConfig` of plain values
(what the assets' run configs and the command line hold) and `load_backend`, which loads the
engine it names once. Every engine offers both operations, judge generation
(`text.TextLLM.generate`) and a cascade partner's next tokens (`partners.Partner.top_tokens`):

- "transformers": any local Hugging Face causal LM directory (`TransformersBackend`);
- "vllm": a local model directory in vLLM on a GPU (`VLLMBackend`; vLLM is imported when loaded);
- "openai": a model served behind an OpenAI-compatible endpoint (`OpenAIBackend`).

For a judge whose answers should survive a crash, wrap the backend in `text.CachedLLM`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from evaluation.backends.openai_backend import APIS, OpenAIBackend
from evaluation.backends.partners import Partner
from evaluation.backends.text import TextLLM
from evaluation.backends.transformers_backend import TransformersBackend
from evaluation.backends.vllm_backend import VLLMBackend

ENGINES = ("transformers", "vllm", "openai")


class Backend(TextLLM, Partner, Protocol):
    """A model of the family: `name`, `generate` (judge) and `top_tokens`/`release` (partner)."""


@dataclass(frozen=True)
class BackendConfig:
    engine: str  # one of ENGINES
    model: str  # a local model directory ("transformers", "vllm"), or the served model's name ("openai")
    base_url: str | None = None  # "openai": the endpoint, ending in /v1
    api: str = "chat"  # "openai", judge generation: "chat" (/chat/completions) or "completions"; a partner always uses /completions
    chat: bool = False  # "transformers", "vllm": judge prompts as the user message of the model's chat template (an instruct judge)
    device: str = "cpu"  # "transformers" ("auto": CUDA when there is one)
    dtype: str = "auto"  # "transformers": "auto" (the weights' own) or a torch dtype name, e.g. "float32"
    tensor_parallel_size: int = 1  # "vllm": GPUs the model is split over
    api_key_env: str | None = "OPENAI_API_KEY"  # "openai": the environment variable holding the API key
    concurrency: int = 4  # "openai": requests in flight
    repetition_penalty: float = 1.2  # partner: HF/CTRL rule over the partner's input ids (A.5)

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose from {', '.join(ENGINES)}")
        if self.api not in APIS:
            raise ValueError(f"unknown api {self.api!r}; choose from {', '.join(APIS)}")
        if self.engine == "openai" and not self.base_url:
            raise ValueError("engine 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")


def load_backend(config: BackendConfig) -> Backend:
    """The engine `config` names, its model loaded (or its endpoint opened) once."""
    if config.engine == "transformers":
        return TransformersBackend(config.model, device=config.device, dtype=config.dtype, chat=config.chat,
                                   repetition_penalty=config.repetition_penalty)
    if config.engine == "vllm":
        return VLLMBackend(config.model, chat=config.chat, repetition_penalty=config.repetition_penalty,
                           tensor_parallel_size=config.tensor_parallel_size)
    return OpenAIBackend(config.model, base_url=config.base_url, api=config.api,
                         repetition_penalty=config.repetition_penalty, api_key_env=config.api_key_env,
                         concurrency=config.concurrency)
