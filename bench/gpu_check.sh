#!/usr/bin/env bash
# The GPU check: bench/gpu_check.sh OUT.json [--smoke]   (see bench/gpu_check.py)
# Needs only PyTorch (CUDA), transformers, pyarrow, sentencepiece and safetensors; no network.
# PYTHON picks the interpreter (default: python3); the whole check is cut at 6 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout 360 "${PYTHON:-python3}" bench/gpu_check.py "$@"
