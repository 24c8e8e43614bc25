#!/usr/bin/env bash
# Stops the KServe front and the TorchServe started by scripts/serve.sh, in that order (the
# front drains: what it holds is answered first), and waits until none of their processes (the
# front, the JVM and its Python workers) is left. Their logs stay in .serve/logs; the unpacked
# archives and key_file.json are removed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN="$ROOT/.serve"
export TMPDIR="$RUN/tmp" TEMP="$RUN/tmp"
PID_FILE="$TMPDIR/.model_server.pid"

# The front (docker/token_gateway.py --pass-through): SIGTERM, then wait until it is gone.
if [ -x "$ROOT/.venv/bin/python" ]; then
  "$ROOT/.venv/bin/python" -m alm_ops.launcher stop-front "$RUN"
fi

if [ ! -f "$PID_FILE" ] || ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "TorchServe (scripts/serve.sh) is not running."
  rm -rf "$RUN/tmp" "$RUN/key_file.json"
  exit 0
fi

JAVA=$(cat "$PID_FILE")
# The JVM's children (its Python workers), read from /proc: no procps needed on a minimal system.
WORKERS=$(grep -l "^PPid:[[:space:]]*$JAVA\$" /proc/[0-9]*/status 2>/dev/null | cut -d/ -f3 || true)
# --foreground makes --stop wait (up to 60 s) for the JVM; run from .serve/ so that it also
# deletes that directory's key_file.json.
(cd "$RUN" && "$ROOT/.venv/bin/torchserve" --stop --foreground >/dev/null 2>&1) || true

# A process that exited but was not reaped yet (state Z) is gone too.
running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
left=""
for _ in $(seq 1 100); do
  left=""
  for pid in $JAVA $WORKERS; do
    if running "$pid"; then left="$left $pid"; fi
  done
  [ -z "$left" ] && break
  sleep 0.2
done
if [ -n "$left" ]; then
  echo "Processes still running after 20 s:$left; killing them." >&2
  # shellcheck disable=SC2086
  kill -9 $left 2>/dev/null || true
fi
rm -rf "$RUN/tmp" "$RUN/key_file.json"
echo "TorchServe stopped (JVM $JAVA and ${WORKERS:+workers ${WORKERS//$'\n'/ } }gone). Logs: $RUN/logs"
