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

This module knows the layout and finds checkpoints without torch (the Dagster commands that
list them stay light); `trainer.checkpoint_io` writes and loads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.files import clean_stale_tmp, read_json

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
