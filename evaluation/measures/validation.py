"""Validation losses (A.4.3): the call mask C_M decoded from a model's `<CALL>` logits,
the call loss (eq. A.5), the non-call loss (eq. A.6), and the matched baseline: a baseline
model's losses on the call mask of model M (Figure 5).

Packing (chosen to match the trainer's "documents joined by EOS, fixed context"): the
validation documents, in shard order and row order within a shard, are concatenated with
EOS after each document, and cut into consecutive windows of `seq_len + 1` tokens that
overlap by one token (inputs = window[:-1], targets = window[1:]), so every token after
the first is a target exactly once. The last, shorter window is kept (its own batch).
Batches hold `batch_size` windows; "15% of tokens" is 15% of a batch's target tokens, as
in the paper ("the top 15% call logits in a batch"), so C_M depends on the batching.
An EOS target (the separator before a document) is never a call: the trainer's masks never
call it (`TokenLabels.eos`), so C_M (`trainer.decoded_mask.decode_call_mask`) is chosen
among the other positions, 15% of all positions as in the trainer.

The call decision (`CallDecision`), over the positions that can be calls (EOS targets
excluded): mean p(<CALL>) at C_M and elsewhere, and the ROC AUC of the <CALL> logit against
(a) the method's own call rule of `trainer.masks.Method.masks` applied to this model on the
validation batches, (b) spaCy fact tokens, (c) a-priori hard tokens, the 15% of each batch's
positions with the highest loss of the matched baseline (`top_k_mask`, as the masks rank).
A reference that is missing (no call rule, no baseline, labels not scored on this split) is
null with the reason beside it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from evaluation import checkpoint
from evaluation.checkpoint import LoadedCheckpoint, load_checkpoint
from pipelines.classes import FACT, OTHER, UNLABELED
from pipelines.files import code_fingerprint, file_sha256, fingerprint
from pipelines.shards import TOKEN_SCHEMA, check_equal_lengths, read_manifest, read_table
from pipelines.tokenizer import MODEL_FILE
from trainer.decoded_mask import call_is_top, decode_call_mask
from trainer.masks import CALL_FRACTION, METHODS, TokenLabels, get_method, num_calls, top_k_mask
from trainer.metrics import roc_auc
from trainer.objective import LogitStats, logit_stats


@dataclass(frozen=True)
class ValidationConfig:
    seq_len: int | None = None  # context of the packed windows; None = the model's context (the paper: 1,024)
    batch_size: int = 8  # windows per batch; the 15% rule is applied per batch
    call_fraction: float = CALL_FRACTION
    max_tokens: int | None = None  # evaluate on the first N validation tokens (CPU); None = all


def token_stats(logits: torch.Tensor, targets: torch.Tensor, call_id: int) -> LogitStats:
    """The trainer's per-position statistics (flattened) of `logits` [..., vocab] for `targets` [...]."""
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
    if bool((targets == call_id).any()):
        raise ValueError("validation targets contain the <CALL> id")
    return logit_stats(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), call_id)


@dataclass
class LossSums:
    """Sums over all batches; the losses are token means over the whole validation set."""

    call: float = 0.0
    call_without_call: float = 0.0  # -log p_{\CALL} on C_M
    non_call: float = 0.0
    without_call: float = 0.0  # -log p_{\CALL} over every token
    n_call: int = 0
    n_non_call: int = 0

    def add(self, full: torch.Tensor, no_call: torch.Tensor, mask: torch.Tensor) -> None:
        self.call += float(full[mask].sum())
        self.call_without_call += float(no_call[mask].sum())
        self.non_call += float(no_call[~mask].sum())
        self.without_call += float(no_call.sum())
        self.n_call += int(mask.sum())
        self.n_non_call += int((~mask).sum())

    def losses(self, prefix: str = "") -> dict:
        n = self.n_call + self.n_non_call
        return {
            f"{prefix}call_loss": self.call / max(self.n_call, 1),
            f"{prefix}call_loss_without_call": self.call_without_call / max(self.n_call, 1),
            f"{prefix}non_call_loss": self.non_call / max(self.n_non_call, 1),
            # the call loss on C_M and the non-call loss elsewhere, token-weighted
            f"{prefix}total_loss": (self.call + self.non_call) / max(n, 1),
            # the plain LM loss with calls disabled, comparable to any model's perplexity
            f"{prefix}loss_without_call": self.without_call / max(n, 1),
        }


def call_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC of `scores` against bool `labels` (`trainer.metrics.roc_auc`: ties count one
    half); None when only one class is present."""
    auc, defined = roc_auc(torch.from_numpy(np.asarray(scores, dtype=np.float64)), torch.from_numpy(np.asarray(labels, dtype=bool)))
    return float(auc) if defined else None


REFERENCES = ("own_rule", "facts", "hard_tokens")  # what the <CALL> logit is ranked against


def own_rule_note(method: str, has_reference_losses: bool) -> str | None:
    """Why the method's own call rule cannot be applied on validation, or None when it can."""
    if method not in METHODS:
        return f"{method!r} is not a method of Table 5"
    m = get_method(method)
    if not m.calls:
        return "no call rule (trained without calls)"
    if m.name == "loss_based":
        return "calls are Bernoulli(0.15) draws: no rule to rank against"
    if m.needs.judge:
        return "LLM-judge labels are not produced for the validation split"
    if m.needs.ref_loss and not has_reference_losses:
        return "no reference model given for the reference losses"
    return None


def own_rule(method: str, stats: LogitStats, cls: torch.Tensor, ref_loss: torch.Tensor | None,
             generator: torch.Generator) -> torch.Tensor:
    """The method's call mask (`trainer.masks.Method.masks`) on one flattened batch, ranked on
    this model's own losses; EOS targets (class UNLABELED here) are never called."""
    labels = TokenLabels(fact=cls == FACT, other=cls == OTHER, eos=cls == UNLABELED, ref_loss=ref_loss)
    return get_method(method).masks(labels, stats.token_loss, generator)[0]


@dataclass
class CallDecision:
    """The call decision's per-position values over the callable positions of all batches."""

    call_logit: list[np.ndarray] = field(default_factory=list)
    p_call: list[np.ndarray] = field(default_factory=list)
    called: list[np.ndarray] = field(default_factory=list)  # C_M
    references: dict[str, list[np.ndarray]] = field(default_factory=lambda: {r: [] for r in REFERENCES})

    def add(self, stats: LogitStats, called: torch.Tensor, callable_: torch.Tensor,
            references: dict[str, torch.Tensor | None]) -> None:
        keep = callable_.cpu().numpy()
        self.call_logit.append(stats.call_logit.cpu().numpy()[keep])
        self.p_call.append(stats.call_logprob.exp().cpu().numpy()[keep])
        self.called.append(called.cpu().numpy()[keep])
        for name, mask in references.items():
            if mask is not None:
                self.references[name].append(mask.cpu().numpy()[keep])

    def metrics(self, notes: dict[str, str]) -> dict:
        logit, p_call, called = (np.concatenate(v) for v in (self.call_logit, self.p_call, self.called))
        out = {
            "mean_p_call_at_calls": float(p_call[called].mean()) if called.any() else None,
            "mean_p_call_at_non_calls": float(p_call[~called].mean()) if (~called).any() else None,
        }
        for name in REFERENCES:
            masks = self.references[name]
            out[f"call_auc_{name}"] = call_auc(logit, np.concatenate(masks)) if masks and name not in notes else None
        out["call_auc_notes"] = notes
        return out


def validation_documents(dataset_dir: Path, manifest: dict) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """(doc_id, token ids, token classes) of each validation document, in shard order and
    row order within a shard."""
    for entry in manifest["shards"]:
        path = dataset_dir / entry["file"]
        table = read_table(path, TOKEN_SCHEMA)
        check_equal_lengths(path, table, ["input_ids", "token_class"])
        for doc_id, split, ids, cls in zip(table.column("doc_id").to_pylist(), table.column("split").to_pylist(),
                                           table.column("input_ids").to_numpy(), table.column("token_class").to_numpy()):
            if split == "validation":
                yield doc_id, ids, cls


def check_tokenizer(ckpt: LoadedCheckpoint, dataset_dir: Path, manifest: dict) -> None:
    """A ValueError unless `ckpt` was trained with the tokenizer of the token dataset (sha256)."""
    if file_sha256(ckpt.path / MODEL_FILE) != manifest["tokenizer"]["sha256"]:
        raise ValueError(f"{ckpt.path / MODEL_FILE} differs from the tokenizer of {dataset_dir} (sha256)")


def validation_stream(dataset_dir: str | Path, eos_id: int, max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The validation documents packed as the trainer packs them (`EOS d1 EOS d2 ...`, so a
    document's first token is predicted after an EOS): token ids and token classes (EOS:
    -1), cut after `max_tokens + 1` tokens (`max_tokens` targets)."""
    dataset_dir = Path(dataset_dir)
    ids, classes, total = [], [], 0
    for _, doc_ids, doc_cls in validation_documents(dataset_dir, read_manifest(dataset_dir)):
        ids += [[eos_id], doc_ids]
        classes += [[UNLABELED], doc_cls]  # the EOS between documents has no word class
        total += len(doc_ids) + 1
        if max_tokens is not None and total > max_tokens:
            break
    if not ids:
        raise ValueError(f"{dataset_dir}: no validation documents")
    end = None if max_tokens is None else max_tokens + 1
    return np.concatenate(ids).astype(np.int64)[:end], np.concatenate(classes).astype(np.int8)[:end]


def packed_batches(stream: np.ndarray, classes: np.ndarray, seq_len: int, batch_size: int
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(inputs, targets, target classes) batches of windows of `seq_len + 1` tokens."""
    starts = list(range(0, len(stream) - 1, seq_len))
    full = [s for s in starts if s + seq_len + 1 <= len(stream)]
    tail = [s for s in starts if s + seq_len + 1 > len(stream)]
    groups = [full[i:i + batch_size] for i in range(0, len(full), batch_size)] + [[s] for s in tail]
    for group in groups:
        windows = np.stack([stream[s:s + seq_len + 1] for s in group])
        cls = np.stack([classes[s + 1:s + seq_len + 1] for s in group])
        windows = torch.from_numpy(windows)
        yield windows[:, :-1], windows[:, 1:], torch.from_numpy(cls)


def evaluate_validation(
    model: str | Path | LoadedCheckpoint,
    dataset_dir: str | Path,
    baseline: str | Path | LoadedCheckpoint | None = None,
    config: ValidationConfig = ValidationConfig(),
    log: Callable[[str], None] = print,
    reference: str | Path | LoadedCheckpoint | None = None,
) -> dict:
    """Call, non-call and total loss of `model` on the validation split of a token dataset,
    with its call mask C_M, and (given `baseline`) the baseline's losses on the same C_M;
    the call decision (module docstring). `reference`: the reference model whose losses the
    rules of rho1 / spacy_refloss rank on."""
    model, baseline, reference = (c if c is None or isinstance(c, LoadedCheckpoint) else load_checkpoint(c)
                                  for c in (model, baseline, reference))
    method = model.info["method"]
    notes = {"own_rule": note} if (note := own_rule_note(method, reference is not None)) else {}
    if baseline is None:
        notes["hard_tokens"] = "no matched baseline given"
    generator = torch.Generator().manual_seed(0)  # the random rule of spacy
    dataset_dir = Path(dataset_dir)
    manifest = read_manifest(dataset_dir)
    seq_len = config.seq_len or model.max_positions
    for ckpt in [c for c in (model, baseline, reference) if c is not None]:
        check_tokenizer(ckpt, dataset_dir, manifest)
        if ckpt.max_positions < seq_len:
            raise ValueError(f"{ckpt.path}: {ckpt.max_positions} positions, fewer than seq_len {seq_len}")
    stream, classes = validation_stream(dataset_dir, model.tokenizer.eos_id, config.max_tokens)
    sums, base_sums, decision = LossSums(), LossSums(), CallDecision()
    top_calls = fact_calls = facts = windows = 0
    device = model.model.device
    total_windows = len(range(0, len(stream) - 1, seq_len))
    with torch.no_grad():
        for b, (inputs, targets, cls) in enumerate(packed_batches(stream, classes, seq_len, config.batch_size)):
            inputs, targets, cls = inputs.to(device), targets.to(device), cls.to(device)
            logits = model.model(input_ids=inputs).logits
            callable_ = cls != UNLABELED
            mask = decode_call_mask(logits, model.call_id, config.call_fraction, callable_)
            stats = token_stats(logits, targets, model.call_id)
            sums.add(stats.full_token_loss, stats.token_loss, mask.reshape(-1))
            top_calls += int(call_is_top(logits, model.call_id).sum())
            fact_calls += int((mask & (cls == FACT)).sum())
            facts += int((cls == FACT).sum())
            flat_cls = cls.reshape(-1)
            references = {"facts": flat_cls == FACT, "own_rule": None, "hard_tokens": None}
            if baseline is not None:
                base = token_stats(baseline.model(input_ids=inputs.to(baseline.model.device)).logits.to(device), targets,
                                   baseline.call_id)
                base_sums.add(base.full_token_loss, base.token_loss, mask.reshape(-1))
                references["hard_tokens"] = top_k_mask(base.token_loss, callable_.reshape(-1), num_calls(len(flat_cls)))
            if "own_rule" not in notes:
                ref_loss = None
                if reference is not None:
                    ref = token_stats(reference.model(input_ids=inputs.to(reference.model.device)).logits.to(device), targets,
                                      reference.call_id).token_loss
                    ref_loss = torch.where(callable_.reshape(-1), ref, torch.nan)
                references["own_rule"] = own_rule(method, stats, flat_cls, ref_loss, generator)
            decision.add(stats, mask.reshape(-1), callable_.reshape(-1), references)
            windows += len(inputs)
            if b % 50 == 0 or windows == total_windows:
                log(f"validation: {windows}/{total_windows} windows")
    n = sums.n_call + sums.n_non_call
    result = {
        **sums.losses(),
        "tokens": n,
        "windows": windows,
        "calls": sums.n_call,
        "call_fraction": sums.n_call / n,
        "call_top_fraction": top_calls / n,  # where <CALL> was the top logit, before the 15% cap/fill
        "calls_on_facts": fact_calls / max(sums.n_call, 1),  # precision of C_M w.r.t. spaCy facts
        "facts_called": fact_calls / max(facts, 1),  # recall of C_M w.r.t. spaCy facts
        **decision.metrics(notes),
        "config": asdict(config) | {"seq_len": seq_len},
        "checkpoint": model.identity(),
        "dataset": {"path": str(dataset_dir), "fingerprint": manifest["fingerprint"]},
    }
    if baseline is not None:
        result.update(base_sums.losses("baseline_"))
        result["baseline_checkpoint"] = baseline.identity()
    if reference is not None:
        result["reference_checkpoint"] = reference.identity()
    result["code_fingerprint"] = code_fingerprint(sys.modules[__name__], checkpoint)
    result["fingerprint"] = fingerprint(result["checkpoint"]["fingerprint"], manifest["fingerprint"], result["config"],
                                        result.get("baseline_checkpoint", {}).get("fingerprint"), result["code_fingerprint"],
                                        result.get("reference_checkpoint", {}).get("fingerprint"))
    return result
