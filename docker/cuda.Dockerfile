# The GPU image of lacy: the trainer under torchrun (Pipes launches it in a pod or container) and
# the vLLM extra for the cascade's large model, with the same Dagster libraries as lacy-dagster so
# it can also serve as the run image of GPU assets. PyPI's torch==2.13.0 is the CUDA build and
# brings its CUDA libraries as wheels; the base image adds the CUDA user space for vLLM's kernels.
# Needs the package index (CUDA wheels are several GB, so no wheelhouse).
#   docker build -f docker/cuda.Dockerfile -t lacy-cuda .
# Not built or run on the machines this project is developed on (no GPU, no public registry).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04
FROM ${BASE_IMAGE}
ARG DAGSTER_LIBS_VERSION=0.29.27
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home \
    DAGSTER_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/lacy
COPY pyproject.toml ./
COPY docker/requirements-deploy.txt docker/gpu-constraints.txt docker/
# as in docker/Dockerfile: dependencies first (an editable install of empty packages), sources last;
# constrained by gpu-constraints.txt (the CPU lock's numpy does not satisfy vLLM)
RUN mkdir pipelines trainer evaluation assets && touch README.md \
 && python3 -m venv /opt/venv \
 && pip install --no-cache-dir -c docker/gpu-constraints.txt --config-settings editable_mode=compat -e '.[gpu]' -r docker/requirements-deploy.txt \
 && pip install --no-cache-dir --no-deps \
      dagster-postgres==${DAGSTER_LIBS_VERSION} dagster-docker==${DAGSTER_LIBS_VERSION} dagster-k8s==${DAGSTER_LIBS_VERSION} \
 && python -c "import torch; assert torch.version.cuda, 'torch is not a CUDA build'"
COPY data data
COPY pipelines pipelines
COPY trainer trainer
COPY evaluation evaluation
COPY assets assets
COPY docker/dagster.yaml /opt/dagster/home/dagster.yaml
# no CMD: the Pipes client or the run launcher gives the command (torchrun ... -m assets.pipes_train)
RUN mkdir -p artifacts /opt/dagster/logs
