# syntax=docker/dockerfile:1
# Container image of the ALM xLSTM forecaster on TorchServe 0.12 (docs/operations.md).
#
#   docker build -t alm-forecaster:dev .
#   docker run --rm -p 127.0.0.1:8080:8080 -p 127.0.0.1:8081:8081 -p 127.0.0.1:8082:8082 alm-forecaster:dev
#
# The image runs the same scripts as the README: scripts/setup_env.sh --serve (virtual
# environment with requirements-serve.txt only, compiled kernel) and scripts/build_archive.py.
# scripts/build_image.sh builds it with podman or docker, also on a machine without a registry.
# Build arguments:
#   PYTHON_IMAGE         the base (default python:3.11-slim-bookworm; scripts/make_base_image.sh
#                        makes a stand-in from Debian's packages)
#   PIP_EXTRA_INDEX_URL  empty by default. requirements-serve.txt pins torch==2.13.0; from the
#                        default package index that is the large CUDA build. For the CPU-only
#                        wheel, pass PyTorch's own CPU wheel index (its ".../whl/cpu" index) or a
#                        local one (scripts/build_image.sh does).
#   ALM_MODELS           models of archive_configs/ to archive, space-separated (default: those
#                        that load_models starts, i.e. the default model)
# Ports (docker/entrypoint.sh binds them on 0.0.0.0 inside the container only; every other
# setting is the repository's config.properties): 8080 inference, 8081 management, 8082
# Prometheus metrics. Publish them on 127.0.0.1 or a private network, never on a public interface.

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
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# ---- build: serving environment, compiled kernel and archives, with the repository's scripts ---
FROM base AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A C++ compiler for the recurrence kernel (scripts/build_native.py; ninja comes from
# requirements-serve.txt); neither is in the final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*
ARG PIP_EXTRA_INDEX_URL=""
ARG ALM_MODELS=""
WORKDIR /opt/alm
# The pinned serving requirements first, in a layer of their own: rebuilt only when they change.
COPY requirements-serve.txt ./
RUN python3 -m venv .venv \
    && .venv/bin/pip install -q -r requirements-serve.txt
COPY . .
# The README's set-up on the serving requirements (the project, editable; the compiled kernel,
# which must build here, the image is for serving at full speed: the second build is a no-op
# that fails loudly when the first could not build it). Then what only building needs
# goes: C++ headers, torch's own test programs, pip and setuptools, and the packages of torch's
# compiler stack (sympy, mpmath, networkx: torch.compile's symbolic shapes and graph passes),
# which an eager forward never imports; tests/deploy/test_image.py serves forecasts from the image.
RUN scripts/setup_env.sh --serve \
    && .venv/bin/python -m alm_forecaster.native \
    && site=$(echo .venv/lib/python3*/site-packages) \
    && rm -rf "$site/torch/include" "$site/torch/share/cmake" \
    && find "$site/torch/bin" -type f ! -name torch_shm_manager -delete \
    && .venv/bin/python -m pip uninstall -q -y sympy mpmath networkx setuptools pip
# As scripts/serve.sh does: the models that load_models starts (ALM_MODELS: exactly those named,
# e.g. "sp500_xlstm seed_untrained"; the untrained seed checkpoint is made when it is named and
# absent), each required to build.
# hadolint ignore=DL3059
RUN models="${ALM_MODELS:-$(.venv/bin/python scripts/serve_config.py --models)}" \
    && set -- \
    && for model in $models; do \
        if [ "$model" = seed_untrained ] && [ ! -f models/seed_untrained.pt ]; then \
            .venv/bin/python scripts/make_seed_checkpoint.py models/seed_untrained.pt; \
        fi; \
        set -- "$@" --model "$model" --require "$model"; \
    done \
    && .venv/bin/python scripts/build_archive.py "$@" --export-path /opt/alm/model_store \
    && rm -rf models tests \
    && chmod -R a+rX /opt/alm

# ---- runtime: no compiler, no training code's dependencies, non-root --------------------------
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
# tini forwards SIGTERM to TorchServe, which stops its workers and exits; -g: to its group.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "-g", "--", "/opt/alm/docker/entrypoint.sh"]
