"""Resources shared by the assets."""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource

from pipelines.files import portable_path, resolve_path


class LacyStorage(ConfigurableResource):
    """Where artifacts live: one folder per asset under `root` (relative to the repo root)."""

    root: str = "artifacts"

    def path(self, *parts: str) -> Path:
        return Path(self.root).resolve().joinpath(*parts)

    def ref(self, path: str | Path) -> str:
        """How pointer files under the root record `path`: relative to the root when under it."""
        return portable_path(path, self.path())

    def resolve(self, ref: str) -> Path:
        """The path a pointer file's `ref` names (relative to the root, or an older absolute one)."""
        return resolve_path(ref, self.path())


class JudgeResource(ConfigurableResource):
    """A judge LLM an evaluation may call (`evaluation.backends.config.BackendConfig`'s
    fields). None unless configured: the empty `engine` means no judge, and there is no
    default endpoint, so nothing paid or remote starts that the user did not name. The
    project's instance reads it from the environment (`from_env`), where the sensor sees it;
    a run may also set it in its run config (`resources: {key: {config: {...}}}`)."""

    engine: str = ""  # "" = no judge; else transformers, vllm or openai
    model: str = ""  # a local model directory, or the served model's name (openai)
    base_url: str = ""  # openai: the endpoint, ending in /v1
    api: str = "chat"  # openai: "chat" (/chat/completions) or "completions"
    chat: bool = False  # transformers, vllm: prompts in the judge's chat template (an instruct model)
    api_key_env: str = "OPENAI_API_KEY"  # openai: the environment variable holding the API key ("" = none)
    concurrency: int = 4  # openai: requests in flight
    tensor_parallel_size: int = 1  # vllm: GPUs the judge is split over

    @classmethod
    def from_env(cls, prefix: str) -> JudgeResource:
        """The judge set by the environment variables `<prefix><FIELD>` (e.g.
        `LACY_ACCEPTABILITY_JUDGE_ENGINE`); the fields without one keep their defaults."""
        return cls(**{name: os.environ[prefix + name.upper()] for name in cls.model_fields if prefix + name.upper() in os.environ})
