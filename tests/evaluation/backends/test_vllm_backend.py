"""The vLLM engine's adapter (vLLM itself is not installed here): a stand-in `vllm` module
in the structure vLLM documents checks what we hand it and how we read its answers."""

import sys
import types

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from evaluation.backends.partners import PartnerQuery
from evaluation.backends.transformers_backend import TransformersBackend


class SamplingParams:
    def __init__(self, temperature, max_tokens, logprobs=None, repetition_penalty=1.0, detokenize=True, stop=None):
        assert temperature == 0.0
        self.max_tokens, self.logprobs, self.repetition_penalty, self.stop = max_tokens, logprobs, repetition_penalty, stop


class LLM:
    """Serves the same HF model: one-token requests with `logprobs` get the top-k logits after
    the repetition penalty (`logprobs_mode="processed_logits"`, HF's rule over the prompt's
    ids, as vLLM applies it) and 3 cached tokens; other requests get greedy text."""

    def __init__(self, model, enable_prefix_caching, logprobs_mode, max_logprobs, max_model_len, **kwargs):
        assert enable_prefix_caching and logprobs_mode == "processed_logits"
        self.model = AutoModelForCausalLM.from_pretrained(model)
        self.tokenizer, self.max_model_len = TransformersBackend(model).tokenizer, max_model_len

    @torch.no_grad()
    def generate(self, prompts, params, use_tqdm):
        outs = []
        for p in prompts:
            ids = torch.tensor([p["prompt_token_ids"]])
            assert ids.shape[1] + params.max_tokens <= self.max_model_len
            if params.logprobs:
                logits = RepetitionPenaltyLogitsProcessor(params.repetition_penalty)(ids, self.model(ids).logits[:, -1])[0]
                top = logits.topk(params.logprobs)
                logprobs = {int(t): types.SimpleNamespace(logprob=float(v)) for t, v in zip(top.indices, top.values)}
                outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(logprobs=[logprobs])], num_cached_tokens=3))
            else:
                new = self.model.generate(ids, max_new_tokens=params.max_tokens, do_sample=False)[0, ids.shape[1]:]
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                outs.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text)]))
        return outs


@pytest.fixture
def stand_in_vllm(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    from evaluation.backends.vllm_backend import VLLMBackend

    return VLLMBackend


def test_vllm_adapter_ranks_like_the_transformers_backend(random_partner, stand_in_vllm):
    """The penalty handed to vLLM, the top two, the tokens read; not vLLM itself."""
    texts = ["the cat sat on the mat . the cat", "Ralph Earl was an American painter"]
    queries = [PartnerQuery(i, t) for i, t in enumerate(texts)]
    partner = stand_in_vllm(random_partner)
    assert partner.params.repetition_penalty == 1.2 and partner.params.logprobs == 2
    assert partner.max_context == 512  # the model config's context, handed to the engine
    served = partner.top_tokens(queries)
    local = TransformersBackend(random_partner).top_tokens(queries)
    assert [r.candidates for r in served] == [r.candidates for r in local]
    assert [r.tokens_processed for r in served] == [r.tokens_processed - 3 for r in local]


def test_vllm_judge_generation_is_greedy_truncated_and_stopped(random_partner, stand_in_vllm):
    """The same engine object generates as a judge: greedy, the prompt keeping its last
    `context - max_new_tokens` tokens, cut at the stop strings as the transformers engine does."""
    judge = stand_in_vllm(random_partner, max_model_len=40)
    local = TransformersBackend(random_partner, max_context=40)
    prompts = ["Ralph Earl was", "the cat sat on the mat . " * 10]  # the second is longer than 40 - 5 tokens
    assert judge.generate(prompts, 5) == local.generate(prompts, 5)
    text = local.generate(prompts[:1], 5)[0]
    stop = text.strip()[1:3]
    assert judge.generate(prompts[:1], 5, stop=[stop]) == local.generate(prompts[:1], 5, stop=[stop])


def test_vllm_backend_needs_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError:
        from evaluation.backends.vllm_backend import VLLMBackend

        with pytest.raises(ImportError, match="vLLM"):
            VLLMBackend("/nonexistent")
    else:
        pytest.skip("vLLM is installed: the GPU check runs it instead")
