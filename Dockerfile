# syntax=docker/dockerfile:1
# Container image of the ALM xLSTM forecaster on TorchServe 0.12 (docs/operations.md).
#
#   docker build -t alm-forecaster:dev .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 -p 127.0.0.1:8082:8082 alm-forecaster:dev
#
# The image runs the same scripts as the README: scripts/setup_env.sh (virtual environment,
# pinned requirements.txt, compiled kernel) and scripts/build_archive.py (archives from
# archive_configs/). Build arguments:
#   PIP_EXTRA_INDEX_URL  empty by default. requirements.txt pins torch==2.13.0; from the default
#                        package index that is the large CUDA build. For the CPU-only wheel, pass
#                        PyTorch's own CPU wheel index (its ".../whl/cpu" index) here.
#   ALM_MODELS           models of archive_configs/ to archive (space-separated; empty = all of
#                        them, those named in load_models required)
# Ports (docker/config.properties binds them on 0.0.0.0 inside the container only): 8080
# inference, 8081 management, 8082 Prometheus metrics. Publish them on 127.0.0.1 or a private
# network, never on a public interface.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- base: Python 3.11 + a Java 17 runtime (TorchServe's front end) + tini (PID 1) ----------
FROM ${PYTHON_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian's package versions move with security updates: pinning them would break rebuilds.
# The slim image lacks /usr/share/man/man1, where the JRE's post-install step writes links.
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless tini \
    && rm -rf /var/lib/apt/lists/*

# ---- build: virtual environment, compiled kernel and archives, with the repository's scripts ----
FROM base AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A C++ compiler for the recurrence kernel (scripts/build_native.py); not in the final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
ARG PIP_EXTRA_INDEX_URL=""
ARG ALM_MODELS=""
WORKDIR /opt/alm
COPY . .
# Note: the kernel is compiled for the CPU of the machine that builds the image (see
# docs/operations.md, "CPU of the build machine"); ALM_FORECASTER_NATIVE=0 at run time turns it off.
RUN scripts/setup_env.sh
# As scripts/serve.sh does: the untrained seed checkpoint is made when absent, then every model
# of archive_configs/ is archived and the models that load_models starts must succeed (the
# others only warn, e.g. a checkpoint not in the build context). With ALM_MODELS, exactly
# those models are archived, and all must succeed.
RUN if [ ! -f models/seed_untrained.pt ]; then \
        .venv/bin/python scripts/make_seed_checkpoint.py models/seed_untrained.pt; \
    fi \
    && set -- \
    && if [ -n "${ALM_MODELS}" ]; then \
        for model in ${ALM_MODELS}; do set -- "$@" --model "$model"; done; \
    else \
        for model in $(.venv/bin/python scripts/serve_config.py --models); do set -- "$@" --require "$model"; done; \
    fi \
    && .venv/bin/python scripts/build_archive.py "$@" --export-path /opt/alm/model_store \
    && chmod -R a+rX /opt/alm

# ---- runtime: no compiler, non-root ---------------------------------------------------------
FROM base AS runtime
RUN groupadd --system --gid 10001 model-server \
    && useradd --system --uid 10001 --gid model-server --home-dir /home/model-server \
       --create-home --shell /usr/sbin/nologin model-server \
    && mkdir -p /home/model-server/run \
    && chown -R model-server:model-server /home/model-server
# Code, virtual environment and archives stay owned by root: read-only for the server.
COPY --from=build /opt/alm /opt/alm
ENV PATH=/opt/alm/.venv/bin:${PATH} \
    ALM_APP_DIR=/opt/alm \
    ALM_RUN_DIR=/home/model-server/run \
    ALM_MODEL_STORE=/opt/alm/model_store \
    HOME=/home/model-server \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/cache
USER 10001:10001
WORKDIR /home/model-server
EXPOSE 8080 8081 8082
# Worker readiness through the management API with the key from key_file.json, not just /ping.
HEALTHCHECK --interval=15s --timeout=10s --start-period=180s --retries=3 \
    CMD ["/opt/alm/.venv/bin/python", "/opt/alm/docker/healthcheck.py", "ready"]
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/opt/alm/docker/entrypoint.sh"]
