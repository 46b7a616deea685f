"""The lm-eval model `lacy`: a LaCy checkpoint scored and decoded with `<CALL>` impossible.

    lm_eval --model lacy --model_args pretrained=CHECKPOINT_DIR --tasks arc_easy ...

The small model's answers are judged by p_{\\CALL} (the paper's NLU evaluation, Table 1):
every logit lm-eval reads has the `<CALL>` logit at -inf, so log-likelihoods are normalized
over the other tokens (`loglikelihood`, `loglikelihood_rolling`), and generation
(`generate_until`) never emits `<CALL>` (transformers' `suppress_tokens`, which sets its
logit to -inf at every step). The call id is read from the checkpoint's `lacy.json`.

How the `lm_eval` command finds `lacy`: lm-eval 0.4.13 resolves `--model` only against its
registry, which holds its own models (`lm_eval.models.MODEL_MAPPING`) and classes decorated
with `@register_model` in modules already imported; it reads no entry points, and
`--include_path` adds tasks only. `make install` therefore puts `lm_eval_model.pth` (next to
this file) into the virtualenv: when the interpreter starts as `lm_eval`/`lm-eval`, it
registers `lacy` as a lazy placeholder for `LacyLM` (nothing of ours is imported until
`--model lacy` is asked for).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from transformers import PreTrainedModel

from evaluation.checkpoint import read_checkpoint


@register_model("lacy")
class LacyLM(HFLM):
    """lm-eval's Hugging Face model with the `<CALL>` logit at -inf everywhere.

    `pretrained`: a checkpoint directory (its `call_token_id` comes from `lacy.json`), or a
    loaded model, then with `tokenizer` and `call_token_id`. Other arguments are HFLM's."""

    def __init__(self, pretrained: str | PreTrainedModel, call_token_id: int | None = None, **kwargs: Any):
        if isinstance(pretrained, str | Path):
            recorded_call_id = read_checkpoint(pretrained).info["call_token_id"]
            if call_token_id is not None and call_token_id != recorded_call_id:
                raise ValueError(f"{Path(pretrained) / 'lacy.json'}: call_token_id {recorded_call_id}, "
                                 f"but call_token_id={call_token_id} was given")
            call_token_id, pretrained = recorded_call_id, str(pretrained)
        elif call_token_id is None:
            raise ValueError("a loaded model needs call_token_id (the checkpoint's lacy.json has it)")
        super().__init__(pretrained=pretrained, **kwargs)
        self.call_token_id = int(call_token_id)

    def _model_call(self, inps: torch.Tensor, attn_mask=None, labels=None) -> torch.Tensor:
        logits = super()._model_call(inps, attn_mask=attn_mask, labels=labels)
        logits[..., self.call_token_id] = float("-inf")
        return logits

    def _model_generate(self, context: torch.Tensor, max_length: int, stop: list[str], **generation_kwargs: Any):
        suppressed = list(generation_kwargs.pop("suppress_tokens", None) or [])
        return super()._model_generate(context, max_length, stop, suppress_tokens=[*suppressed, self.call_token_id],
                                       **generation_kwargs)
