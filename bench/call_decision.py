"""How informative a checkpoint's <CALL> decision is on the validation split, with the model
loaded by `transformers` alone (`AutoModelForCausalLM.from_pretrained(checkpoint_dir)`), and
what its run logged at the end of training.

    PYTHONPATH=. python bench/call_decision.py CHECKPOINT_DIR [CHECKPOINT_DIR ...] \
        [--data artifacts/token_shards] [--max-tokens N]

Validation positions are packed as `evaluation.measures.validation` packs them (documents joined by
EOS, windows of the model's context overlapping by one token, batches of 8 windows). Per
checkpoint, one line:

- `val_call_top`: share of validation positions where <CALL> is the top logit;
- `val_p_call`, `val_p_call_fact`, `val_p_call_non_fact`: mean p(<CALL>) over all positions,
  where the next token is a spaCy fact, where it is not (grammatical or other);
- `val_fact_auc`: ROC AUC of the <CALL> logit against spaCy fact tokens (token_class == 2
  of the next token; EOS targets, which have no class, left out);
- `val_lacy_auc`: ROC AUC against LaCy's own rule applied on validation (per batch, the
  highest-own-loss fact tokens, 15% of the batch's tokens);
- `val_loss`, `val_loss_renormalized`: mean -log p and -log p_CALL of the next token;
- `train_*`: the run's `metrics.jsonl` (the checkpoint's parent folder) averaged over its
  last tenth of logging steps (call_top_fraction, p_call_at_call, p_call_at_non_call,
  call_auc, call_loss, call_loss_renormalized, non_call_loss, non_call_loss_full).

Issue #8's acceptance for the LaCy model of `make run`: val_call_top <= 0.90 and
val_fact_auc >= 0.62. The last line: `call_top=<first checkpoint> fact_auc=<first checkpoint>`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from evaluation.measures.validation import packed_batches, validation_stream
from pipelines.classes import FACT
from pipelines.shards import read_manifest
from trainer.masks import lacy_call_mask
from trainer.metrics import roc_auc

TRAIN_KEYS = ("call_top_fraction", "p_call_at_call", "p_call_at_non_call", "call_auc", "call_loss",
              "call_loss_renormalized", "non_call_loss", "non_call_loss_full")


@torch.no_grad()
def validation_decision(checkpoint: Path, data: Path, max_tokens: int | None, batch_size: int = 8) -> dict:
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    tokenizer = read_manifest(data)["tokenizer"]
    call_id = tokenizer["call_token_id"]
    if model.config.vocab_size != call_id + 1:
        raise ValueError(f"{checkpoint}: vocabulary {model.config.vocab_size} does not end at <CALL> {call_id} of {data}")
    stream, classes = validation_stream(data, tokenizer["eos_id"], max_tokens)
    call_logit, fact, labeled, top, p_call, loss, loss_text, lacy = [], [], [], [], [], [], [], []
    for inputs, targets, cls in packed_batches(stream, classes, model.config.n_positions, batch_size):
        logits = model(input_ids=inputs).logits.float().reshape(-1, call_id + 1)
        t, c = targets.reshape(-1), cls.reshape(-1)
        logp = torch.log_softmax(logits, -1)
        logp_text = torch.log_softmax(logits[:, :call_id], -1).gather(1, t[:, None]).squeeze(1)
        call_logit.append(logits[:, call_id])
        top.append(logits.argmax(-1) == call_id)
        p_call.append(logp[:, call_id].exp())
        loss.append(-logp.gather(1, t[:, None]).squeeze(1))
        loss_text.append(-logp_text)
        fact.append(c == FACT)
        labeled.append(c >= 0)
        lacy.append(lacy_call_mask(-logp_text, c == FACT))
    call_logit, fact, labeled, top, p_call, lacy = map(torch.cat, (call_logit, fact, labeled, top, p_call, lacy))
    return {
        "val_positions": len(top),
        "val_call_top": top.double().mean().item(),
        "val_p_call": p_call.double().mean().item(),
        "val_p_call_fact": p_call[fact].double().mean().item(),
        "val_p_call_non_fact": p_call[labeled & ~fact].double().mean().item(),
        "val_fact_auc": roc_auc(call_logit[labeled], fact[labeled])[0].item(),
        "val_lacy_auc": roc_auc(call_logit, lacy)[0].item(),
        "val_loss": torch.cat(loss).double().mean().item(),
        "val_loss_renormalized": torch.cat(loss_text).double().mean().item(),
    }


def training_tail(checkpoint: Path) -> dict:
    """The run's logged call-decision metrics over its last tenth of logging steps."""
    path = checkpoint.parent / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["step"] <= int(checkpoint.name.removeprefix("step-"))]
    tail = rows[-max(1, len(rows) // 10):]
    out = {}
    for key in TRAIN_KEYS:
        values = [r[key] for r in tail if r.get(key) is not None]
        if values:
            out[f"train_{key}"] = sum(values) / len(values)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--data", type=Path, default=Path("artifacts/token_shards"))
    p.add_argument("--max-tokens", type=int, default=None, help="the first N validation tokens (default: all)")
    a = p.parse_args()
    torch.set_grad_enabled(False)
    first = None
    for checkpoint in a.checkpoints:
        info = json.loads((checkpoint / "lacy.json").read_text())
        result = {"checkpoint": str(checkpoint), "method": info["method"], "call_objective": info.get("call_objective"),
                  "step": info["step"], **validation_decision(checkpoint, a.data, a.max_tokens), **training_tail(checkpoint)}
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()), flush=True)
        first = first or result
    print(f"call_top={first['val_call_top']:.4f} fact_auc={first['val_fact_auc']:.4f}")


if __name__ == "__main__":
    main()
