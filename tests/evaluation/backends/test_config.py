"""One config and one factory for every engine."""

import pytest
import torch

from evaluation.backends.config import BackendConfig, load_backend
from evaluation.backends.openai_backend import OpenAIBackend
from evaluation.backends.transformers_backend import TransformersBackend


def test_load_backend_from_config_values(random_partner):
    served = load_backend(BackendConfig("openai", "m", base_url="http://127.0.0.1:9/v1", api="completions",
                                        api_key_env=None, concurrency=3, repetition_penalty=1.0))
    assert isinstance(served, OpenAIBackend) and served.name == "openai-completions:http://127.0.0.1:9/v1:m"
    assert served.endpoint.config.concurrency == 3 and served.endpoint.config.api_key_env is None
    assert "repetition_penalty" not in served.top_body
    local = load_backend(BackendConfig("transformers", str(random_partner), dtype="float32", repetition_penalty=1.3))
    assert isinstance(local, TransformersBackend) and local.penalty == 1.3 and local.max_context == 512
    assert next(local.model.parameters()).dtype == torch.float32 and local.device == "cpu"


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="base_url"):
        BackendConfig("openai", "m")
    with pytest.raises(ValueError, match="unknown engine 'llama.cpp'"):
        BackendConfig("llama.cpp", "m")
    with pytest.raises(ValueError, match="unknown api"):
        BackendConfig("openai", "m", base_url="http://127.0.0.1:9/v1", api="responses")
