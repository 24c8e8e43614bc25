#!/usr/bin/env bash
# Idempotent environment set-up: Java check, virtual environment, pinned requirements and the
# compiled recurrence kernel. Used by scripts/serve.sh, scripts/run_tests.sh and the Dockerfile.
#   scripts/setup_env.sh [--dev]     (--dev adds the test tools from requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if ! command -v java >/dev/null 2>&1 || ! java -version 2>&1 | grep -qE 'version "(1[1-9]|[2-9][0-9])'; then
  echo "TorchServe needs a Java 11+ runtime; none found." >&2
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing openjdk-17-jre-headless from Debian's packages..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "Install one, e.g. 'sudo apt-get install openjdk-17-jre-headless', then re-run." >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.txt
if [ "${1:-}" = "--dev" ]; then
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements-dev.txt
  # promtool (Debian's prometheus package) checks the scrape config and dashboard queries.
  if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
      >/dev/null) || echo "warning: could not install promtool; its deployment checks will be skipped" >&2
  fi
fi
"$VENV/bin/python" scripts/build_native.py
