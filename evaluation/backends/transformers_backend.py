"""Any local Hugging Face causal LM directory through `transformers`, on CPU or a GPU: the
model and its tokenizer are loaded once and serve both operations of the family,
judge generation (`generate`) and a cascade partner's next tokens (`top_tokens`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM, StoppingCriteriaList

from evaluation.backends.batched_lm import BatchedLM
from evaluation.backends.hf import context_length, encode_prompt, last_tokens, load_tokenizer
from evaluation.backends.partners import PartnerQuery, PartnerReply, continuation_text, leading_ids, rank_candidates
from evaluation.backends.text import truncate_at_stop


class TransformersBackend:
    """One local model.

    - `generate`: greedy, batched (`batch_size` prompts, left padding, shortest first), each
      prompt keeping its last `context - max_new_tokens` tokens; `chat` sends each prompt as
      the user message of the model's chat template (an instruct judge).
    - `top_tokens`: the two best next tokens after the repetition penalty over the input ids;
      the queries of a call go through one forward (`BatchedLM`, `max_batch` rows at most),
      and each sequence keeps its KV cache across calls: a call reads only the tokens
      appended since the previous one, or from where its re-tokenization of the text
      diverges from what is cached. The input is `leading_ids` (our EOS for one of our
      checkpoints) + the tokenizer's ids, of which it keeps the last `context`.

    `dtype`: "auto" (the weights' own dtype, e.g. float32 for our checkpoints) or a torch
    dtype name ("float32", "bfloat16"); `device="auto"` picks CUDA when there is one.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        dtype: str = "auto",
        chat: bool = False,
        batch_size: int = 8,
        max_context: int | None = None,
        repetition_penalty: float = 1.2,
        reuse_cache: bool = True,
        max_batch: int = 0,
    ):
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"{model_dir}: not a Hugging Face model directory (no config.json)")
        self.name = f"transformers:{model_dir.resolve()}"
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.tokenizer = load_tokenizer(model_dir)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=False, local_files_only=True,
                                                     dtype=dtype).to(device).eval()
        self.model = model
        self.max_context = max_context or context_length(model.config)
        self.batch_size = batch_size
        self.chat = chat
        self.lead = leading_ids(model_dir, self.tokenizer)
        self.lm = BatchedLM(model, reuse_cache, max_batch)
        self.penalty = repetition_penalty

    # ---------------------------------------------------------------- judge generation

    def generate(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] = ()) -> list[str]:
        max_input = self.max_context - max_new_tokens if self.max_context else None
        if max_input is not None and max_input < 1:
            raise ValueError(f"{self.name}: max_new_tokens {max_new_tokens} leaves no input in a context of {self.max_context}")
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

    # ---------------------------------------------------------------- partner next tokens

    def input_ids(self, text: str) -> list[int]:
        return last_tokens(self.lead + self.tokenizer(text).input_ids, self.max_context)

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


class _StopInGenerated:
    """Ends a row once its generated text (never the prompt, unlike `stop_strings`, which
    also matches across the prompt's end) contains a stop string."""

    def __init__(self, tokenizer: Any, prompt_len: int, stop: Sequence[str]):
        self.tokenizer, self.prompt_len, self.stop = tokenizer, prompt_len, list(stop)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        return torch.tensor([any(s in t for s in self.stop) for t in texts], device=input_ids.device)
