#!/bin/sh
# Fill docker/wheelhouse with every wheel the lacy-dagster image installs (lacy's locked
# dependencies with the CPU torch, the deployment's additions, the Dagster integration libraries),
# so `docker build` installs with --no-index and needs no package index. Run from anywhere.
#   PYTHON=python3.11 docker/wheelhouse.sh
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
LIBS_VERSION=${DAGSTER_LIBS_VERSION:-0.29.27}
out=docker/wheelhouse
mkdir -p "$out"
# torch==2.13.0 in the lock: where the CPU build is not found first, say so with
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
"$PYTHON" -m pip wheel --quiet --wheel-dir "$out" -c requirements.lock \
    -r requirements.lock -r docker/requirements-deploy.txt setuptools wheel
"$PYTHON" -m pip download --quiet --no-deps --dest "$out" \
    "dagster-postgres==$LIBS_VERSION" "dagster-docker==$LIBS_VERSION" "dagster-k8s==$LIBS_VERSION"
ls "$out"/torch-* | grep -q '+cpu' || echo "warning: $out holds no CPU build of torch (see above)" >&2
echo "$out: $(ls "$out" | wc -l) wheels"
