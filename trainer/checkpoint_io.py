"""Writing a checkpoint (`trainer.checkpoint` describes the layout) and loading our model and
the trainer state back from one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipelines.files import atomic_path, read_json
from pipelines.tokenizer import save_hf_tokenizer
from trainer.checkpoint import INFO_FILE, STATE_FILE, WEIGHTS_FILE, checkpoint_name
from trainer.model import GPT, config_from_hf, hf_config


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: GPT,
    tokenizer_path: str | Path,
    info: dict,
    trainer_state: dict | None = None,
) -> Path:
    """Write `<run_dir>/step-XXXXXXXX/` atomically; returns its path."""
    final = Path(run_dir) / checkpoint_name(step)
    with atomic_path(final) as tmp:
        tmp.mkdir()
        config = hf_config(model.cfg, bos_id=int(info["bos_id"]), eos_id=int(info["eos_id"]))
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        save_file(model.hf_state_dict(), tmp / WEIGHTS_FILE, metadata={"format": "pt"})
        shutil.copymode(tmp / "config.json", tmp / WEIGHTS_FILE)  # safetensors writes 0600; match the rest
        save_hf_tokenizer(tokenizer_path, tmp)
        if trainer_state is not None:
            torch.save(trainer_state, tmp / STATE_FILE)
        (tmp / INFO_FILE).write_text(json.dumps({**info, "step": step}, indent=2, sort_keys=True) + "\n")
    return final


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> GPT:
    """Our model from a checkpoint folder (or any folder with a GPT-2 `config.json` and
    `model.safetensors` in this layout)."""
    checkpoint = Path(checkpoint)
    model = GPT(config_from_hf(read_json(checkpoint / "config.json")))
    model.load_hf_state_dict(load_file(checkpoint / WEIGHTS_FILE))
    return model.to(device)


def load_trainer_state(checkpoint: str | Path) -> dict:
    path = Path(checkpoint) / STATE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; this checkpoint cannot be resumed")
    return torch.load(path, map_location="cpu", weights_only=True)
