"""bench/gpu_check.sh: it imports only what a bare CUDA machine has, and its smoke mode runs
every part on CPU and writes the numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# installed here, absent on the GPU machine the check is written for
ABSENT = ("dagster", "dagster_pipes", "spacy", "polars", "lm_eval", "matplotlib")
BLOCK = f"""
import importlib.abc, runpy, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {ABSENT!r}:
            raise ImportError(f"{{name}} is not installed on the GPU machine")
sys.meta_path.insert(0, Absent())
sys.path.insert(0, "bench")
import trainer.__main__  # what the check's torchrun children import
runpy.run_path("bench/gpu_check.py", run_name="imported")
"""


def test_the_gpu_check_imports_nothing_but_torch_transformers_pyarrow_sentencepiece_safetensors():
    done = subprocess.run([sys.executable, "-c", BLOCK], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow  # about 2.5 minutes on 2 busy cores: seven trainer processes
def test_the_smoke_mode_runs_every_part_and_writes_its_numbers(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([str(ROOT / "bench" / "gpu_check.sh"), str(out), "--smoke"], cwd=tmp_path,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    step = result["step"]
    assert step["model_size"] == "smoke" and step["batch"] == [4, 32] and step["micro_batch"] == [2, 32]
    assert step["baseline"]["step_s"] > 0 and step["lacy"]["tokens_per_s"] > 0 and step["lacy_vs_baseline_step"] > 0
    assert step["lacy"]["mfu"] is None  # no known peak on CPU
    assert result["ddp"]["backend"] == "gloo" and result["ddp"]["equal"]
    assert result["resume"]["bit_identical"] and result["resume"]["straight_runs"]["bit_identical"]  # exact on CPU
