"""Checkpoints as the trainer writes them (`trainer.checkpoint`: a Hugging Face GPT-2
directory, the Hugging Face tokenizer files of our SentencePiece model, `<CALL>` the last id,
and `lacy.json`), checked and loaded for evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedModel

from pipelines.files import atomic_path, file_sha256, fingerprint, write_json
from pipelines.tokenizer import MODEL_FILE, Tokenizer, save_hf_tokenizer
from trainer.checkpoint import INFO_FILE, WEIGHTS_FILE, Checkpoint

REQUIRED_KEYS = ("method", "step", "call_token_id", "data_fingerprint")


class CheckpointError(ValueError):
    """A checkpoint directory that is incomplete or inconsistent."""


@dataclass
class LoadedCheckpoint:
    """A checkpoint (its folder and lacy.json: `trainer.checkpoint.Checkpoint`) with its model
    and tokenizer loaded."""

    checkpoint: Checkpoint
    model: PreTrainedModel
    tokenizer: Tokenizer  # the SentencePiece model the checkpoint was trained with

    @property
    def path(self) -> Path:
        return self.checkpoint.path

    @property
    def info(self) -> dict:
        return self.checkpoint.info

    @property
    def call_id(self) -> int:
        return self.tokenizer.call_id

    @property
    def max_positions(self) -> int:
        return int(self.model.config.max_position_embeddings)

    @cached_property
    def fingerprint(self) -> str:
        """`checkpoint_fingerprint`, hashed once per loaded checkpoint."""
        return checkpoint_fingerprint(self.path)

    def identity(self) -> dict:
        """What an evaluation artifact records about the checkpoint it evaluated."""
        return {"path": str(self.path), "method": self.info["method"], "step": self.info["step"],
                "data_fingerprint": self.info["data_fingerprint"], "fingerprint": self.fingerprint}


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint in `path` (any folder in the trainer's layout, named `step-XXXXXXXX` or
    not), checked to hold every file and `lacy.json` key an evaluation needs."""
    path = Path(path)
    info_path = path / INFO_FILE
    for name in ("config.json", WEIGHTS_FILE, MODEL_FILE, INFO_FILE):
        if not (path / name).exists():
            raise CheckpointError(f"{path / name}: missing; a checkpoint holds config.json, {WEIGHTS_FILE}, "
                                  f"{MODEL_FILE} and {INFO_FILE}")
    try:
        info = json.loads(info_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{info_path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    missing = [k for k in REQUIRED_KEYS if k not in info]
    if missing:
        raise CheckpointError(f"{info_path}: missing keys {missing}")
    return Checkpoint(path, int(info["step"]), info)


def checkpoint_fingerprint(path: str | Path) -> str:
    """Hash of the weights, the tokenizer and lacy.json: a changed checkpoint is re-evaluated."""
    path = Path(path)
    return fingerprint(file_sha256(path / WEIGHTS_FILE), file_sha256(path / MODEL_FILE),
                       json.loads((path / INFO_FILE).read_text()))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> LoadedCheckpoint:
    checkpoint = read_checkpoint(path)
    path = checkpoint.path
    tok = Tokenizer(path / MODEL_FILE)
    if checkpoint.info["call_token_id"] != tok.call_id:
        raise CheckpointError(f"{path / INFO_FILE}: call_token_id {checkpoint.info['call_token_id']} but {path / MODEL_FILE} "
                              f"has <CALL> at {tok.call_id}")
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=False, dtype=dtype).to(device).eval()
    if model.config.vocab_size != tok.vocab_size:
        raise CheckpointError(f"{path / 'config.json'}: vocab_size {model.config.vocab_size}, "
                              f"but {path / MODEL_FILE} has {tok.vocab_size} pieces")
    return LoadedCheckpoint(checkpoint, model, tok)


def load_hf_tokenizer(path: str | Path):
    """The checkpoint's Hugging Face tokenizer (for lm-eval)."""
    return AutoTokenizer.from_pretrained(path, trust_remote_code=False)


def write_random_checkpoint(
    out_dir: str | Path,
    tokenizer_path: str | Path,
    *,
    n_embd: int = 32,
    n_layer: int = 2,
    n_head: int = 2,
    n_positions: int = 128,
    seed: int = 0,
    method: str = "random",
    model: GPT2LMHeadModel | None = None,
) -> Path:
    """Write a checkpoint in the trainer's layout around a randomly initialized GPT-2 (or
    around `model`). A stand-in for tests and benchmarks when no trained checkpoint exists;
    its outputs mean nothing."""
    tok = Tokenizer(tokenizer_path)
    if model is None:
        torch.manual_seed(seed)
        config = GPT2Config(vocab_size=tok.vocab_size, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                            n_positions=n_positions, bos_token_id=tok.bos_id, eos_token_id=tok.eos_id)
        model = GPT2LMHeadModel(config)
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        save_hf_tokenizer(tok.path, tmp)
        write_json(tmp / INFO_FILE, {"method": method, "step": 0, "call_token_id": tok.call_id,
                                     "data_fingerprint": "random", "seed": seed})
    return out_dir
