"""Peak resident memory of a benchmark's child process (shared by the memory benchmarks).

The child is the benchmark script itself run with some arguments in a fresh interpreter; it
ends by printing `vm_hwm_kib()`. VmHWM, not ru_maxrss, which keeps the parent's peak across
fork and exec.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def vm_hwm_kib() -> int:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def child_peak_mib(script: str, *args: str) -> float:
    """Run `python script *args` (one thread) and return the peak it printed last, in MiB."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, script, *args], env=env, capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024
