#!/usr/bin/env bash
# Sets up everything the tests need (idempotent) and runs the whole suite, real TorchServe
# servers included (the tests start and stop their own).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh --dev
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
