"""Checkpoints: a Hugging Face model folder plus what an exact resume needs.

`<run dir>/step-XXXXXXXX/` holds
- `config.json`, `model.safetensors`: a `GPT2LMHeadModel` (`AutoModelForCausalLM.from_pretrained(dir)`),
- `tokenizer.model` (SentencePiece), `tokenizer.json`, `tokenizer_config.json`,
  `special_tokens_map.json`: the same tokenizer for `AutoTokenizer` (a fast tokenizer that
  matches SentencePiece on any text), `<CALL>` special at the last id,
- `trainer_state.pt`: optimizer state, every rank's RNG states, the data loader position
  (loads with `torch.load(..., weights_only=True)`),
- `lacy.json`: method, preset, step, tokens seen, data fingerprints, call token id, configs.

The folder is written under a temporary name (`.tmp-<pid>-step-...`) and renamed when
complete, so a folder named `step-XXXXXXXX` is always whole: that is what the functions
below recognise, for runs started by Dagster or by hand under torchrun alike.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pipelines.files import atomic_path, clean_stale_tmp, read_json
from pipelines.tokenizer import save_hf_tokenizer
from trainer.model import GPT, config_from_hf, hf_config

INFO_FILE = "lacy.json"
STATE_FILE = "trainer_state.pt"
WEIGHTS_FILE = "model.safetensors"
_NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    info: dict  # the contents of lacy.json

    @property
    def run_dir(self) -> Path:
        return self.path.parent


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


def _read(path: Path) -> Checkpoint | None:
    m = _NAME.match(path.name)
    if not (m and path.is_dir() and (path / INFO_FILE).exists()):
        return None
    return Checkpoint(path, int(m.group(1)), read_json(path / INFO_FILE))


def run_checkpoints(run_dir: str | Path) -> list[Checkpoint]:
    """The complete checkpoints of one run directory, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = (_read(p) for p in run_dir.iterdir())
    return sorted((c for c in found if c is not None), key=lambda c: c.step)


def latest_checkpoint(run_dir: str | Path) -> Checkpoint | None:
    """The newest complete checkpoint of a run directory, or None."""
    found = run_checkpoints(run_dir)
    return found[-1] if found else None


def list_checkpoints(root: str | Path) -> list[Checkpoint]:
    """Every complete checkpoint under `root` (any depth), sorted by run directory and step."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = (_read(info.parent) for info in root.rglob(INFO_FILE) if not any(p.startswith(".tmp-") for p in info.parts))
    return sorted((c for c in found if c is not None), key=lambda c: (str(c.run_dir), c.step))


def clean_partial(run_dir: str | Path) -> int:
    """Remove the temporary folders of checkpoints interrupted mid-write."""
    return clean_stale_tmp(run_dir)


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
