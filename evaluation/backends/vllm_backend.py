"""vLLM on a GPU (imported lazily: not installed on CPU machines, `pip install '.[gpu]'`): one
engine, loaded once, serves judge generation (`generate`) and a cascade partner's next
tokens (`top_tokens`). Prompts are tokenized and truncated here and passed as token ids;
automatic prefix caching is on (FActScore prompts share long demo prefixes, a cascade's
partner inputs grow by a token or a few per call)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

from evaluation.backends.hf import encode_prompt, last_tokens, load_tokenizer, read_context_length
from evaluation.backends.partners import PartnerQuery, PartnerReply, continuation_text, leading_ids
from evaluation.backends.text import truncate_at_stop


class VLLMBackend:
    """One model in a vLLM engine.

    - `generate`: all prompts in one call, greedy, each keeping its last
      `context - max_new_tokens` tokens; `chat` as for `TransformersBackend`.
    - `top_tokens`: all queries of a decoding step as one batch; prefix caching serves the
      part of each input the engine has seen, so a call computes only the new tokens (at
      vLLM's block granularity): `tokens_processed` = prompt tokens -
      `RequestOutput.num_cached_tokens`. The repetition penalty is vLLM's own
      (`SamplingParams.repetition_penalty`: the same HF/CTRL rule over the prompt's ids),
      and the engine returns its top `num_logprobs` logits after the penalty
      (`logprobs_mode="processed_logits"`; for greedy requests these are the logits the
      argmax is taken over), so the top two are exact. The input keeps its last
      `context - 1` tokens (input and the one new token must fit).

    `context`: `max_model_len`, else the model config's (`hf.context_length`).
    Not run on this machine: vLLM is not installed here.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        chat: bool = False,
        repetition_penalty: float = 1.2,
        num_logprobs: int = 2,
        seed: int = 0,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
    ):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as e:
            raise ImportError("the vllm backend needs vLLM on a GPU machine: pip install '.[gpu]'") from e

        model_dir = Path(model_dir)
        self.name = f"vllm:{model_dir.resolve()}"
        self.chat = chat
        self.tokenizer = load_tokenizer(model_dir)
        self.lead = leading_ids(model_dir, self.tokenizer)  # our EOS for one of our checkpoints
        self.max_context = max_model_len or read_context_length(model_dir)
        self.llm = LLM(
            model=str(model_dir),
            tokenizer=str(model_dir),
            trust_remote_code=False,
            enable_prefix_caching=True,
            logprobs_mode="processed_logits",
            max_logprobs=num_logprobs,
            seed=seed,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=self.max_context,
            tensor_parallel_size=tensor_parallel_size,
        )
        self.params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=num_logprobs,
                                     repetition_penalty=repetition_penalty, detokenize=False)

    # ---------------------------------------------------------------- judge generation

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        from vllm import SamplingParams

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop=list(stop) or None)
        max_input = self.max_context - max_new_tokens if self.max_context else None
        requests = [{"prompt_token_ids": encode_prompt(self.tokenizer, p, self.chat, max_input)} for p in prompts]
        results = self.llm.generate(requests, params, use_tqdm=False)
        return [truncate_at_stop(r.outputs[0].text, stop) for r in results]

    # ---------------------------------------------------------------- partner next tokens

    def top_tokens(self, queries: Sequence[PartnerQuery]) -> list[PartnerReply]:
        limit = self.max_context - 1 if self.max_context else None
        inputs = [last_tokens(self.lead + self.tokenizer(q.text).input_ids, limit) for q in queries]
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
