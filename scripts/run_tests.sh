#!/usr/bin/env bash
# Sets up everything the tests need (idempotent), checks lint and formatting, and runs the whole
# suite, real TorchServe servers, the image and a bare-Debian container included (the tests start
# and stop their own).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh --dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
