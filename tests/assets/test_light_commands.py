"""The commands the Makefile runs before every stage (`python -m assets.recover`,
`python -m assets.register`) import neither torch, spaCy nor transformers."""

import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "spacy", "transformers")


@pytest.mark.parametrize("module", ["assets.recover", "assets.register"])
def test_small_commands_import_little(module):
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == []
