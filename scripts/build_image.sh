#!/usr/bin/env bash
# Builds the serving image (Dockerfile) with podman or docker, also on a machine that reaches
# Debian's archive and PyPI but no container registry and no PyTorch wheel index.
#
#   scripts/build_image.sh [--tag TAG] [--debian-base] [--models "A B"] [--torch-wheel WHEEL]
#
#   --tag TAG          image name (default alm-forecaster:dev)
#   --debian-base      when the base python:3.11-slim-bookworm is not present locally, make a
#                      stand-in from Debian's packages (scripts/make_base_image.sh) instead of
#                      pulling it from a registry
#   --models "A B"     models of archive_configs/ to archive (default: load_models, the default model)
#   --torch-wheel F    the CPU build of torch 2.13.0 as a local wheel file, served to the build as
#                      a one-package index (podman only). Default: a torch-2.13.0+cpu wheel found in
#                      pip's find-links directories, else $PIP_EXTRA_INDEX_URL as given (e.g.
#                      PyTorch's CPU wheel index); without either, pip takes the CUDA build.
#
# The engine is podman when installed, else docker (CONTAINER_ENGINE overrides). Prints the
# build time and the image size.
set -euo pipefail
cd "$(dirname "$0")/.."

tag=alm-forecaster:dev
debian_base=""
models=""
wheel=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --tag) tag=$2; shift 2 ;;
    --debian-base) debian_base=1; shift ;;
    --models) models=$2; shift 2 ;;
    --torch-wheel) wheel=$2; shift 2 ;;
    *) echo "usage: $0 [--tag TAG] [--debian-base] [--models \"A B\"] [--torch-wheel WHEEL]" >&2; exit 2 ;;
  esac
done

engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
if [ -z "$engine" ]; then
  echo "error: no container engine: install podman (apt-get install podman runc) or docker" >&2
  exit 1
fi
engine_name=$(basename "$engine")
global=()
build=(--network host)
if [ "$engine_name" = podman ]; then
  # podman's default runtime (crun) refuses hosts with hybrid cgroups; runc runs everywhere.
  # Explicit limits: podman's defaults (the host's) cannot be set where root lacks CAP_SYS_RESOURCE.
  if command -v runc >/dev/null 2>&1; then global+=(--runtime runc); fi
  build+=(--format docker --ulimit nofile=20000:20000 --ulimit nproc=20000:20000)
fi

base=python:3.11-slim-bookworm
if ! "$engine" "${global[@]}" image inspect "$base" >/dev/null 2>&1; then
  if [ -n "$debian_base" ]; then
    scripts/make_base_image.sh python "$base"
  fi
fi
if [ "$engine_name" = podman ] && "$engine" "${global[@]}" image inspect "$base" >/dev/null 2>&1; then
  build+=(--pull=never)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$wheel" ] && [ -z "${PIP_EXTRA_INDEX_URL:-}" ]; then
  links="${PIP_FIND_LINKS:-} $(python3 -m pip config get global.find-links 2>/dev/null || true)"
  for dir in $links; do
    dir=${dir#file://}
    for candidate in "$dir"/torch-2.13.0+cpu-*.whl; do
      [ -f "$candidate" ] && wheel=$candidate
    done
  done
fi
if [ -n "$wheel" ]; then
  if [ "$engine_name" != podman ]; then
    echo "error: a local torch wheel needs podman (build-time volumes); with docker pass" \
         "PIP_EXTRA_INDEX_URL=<PyTorch's CPU wheel index> instead" >&2
    exit 1
  fi
  # A one-package index: pip resolves torch==2.13.0 to this CPU wheel ('+' escaped in the link).
  mkdir -p "$work/index/torch"
  name=$(basename "$wheel")
  ln "$wheel" "$work/index/torch/$name" 2>/dev/null || cp "$wheel" "$work/index/torch/$name"
  printf '<a href="%s">%s</a>\n' "${name//+/%2B}" "$name" >"$work/index/torch/index.html"
  build+=(-v "$work/index:/cpu-index:ro" --build-arg PIP_EXTRA_INDEX_URL=file:///cpu-index)
  echo "torch: the local CPU wheel $wheel"
elif [ -n "${PIP_EXTRA_INDEX_URL:-}" ]; then
  build+=(--build-arg "PIP_EXTRA_INDEX_URL=$PIP_EXTRA_INDEX_URL")
else
  echo "warning: no CPU torch wheel or index given: pip installs torch's CUDA build (several GB)" >&2
fi
[ -n "$models" ] && build+=(--build-arg "ALM_MODELS=$models")

started=$(date +%s)
"$engine" "${global[@]}" build "${build[@]}" -t "$tag" -f Dockerfile .
size=$("$engine" "${global[@]}" image inspect "$tag" --format '{{.Size}}')
echo "built $tag with $engine_name in $(( $(date +%s) - started )) s; image size $(( size / 1000000 )) MB"
