#!/usr/bin/env bash
# One command from a fresh machine to a running TorchServe with the default model:
#   1. scripts/setup_env.sh: Java check, .venv, pinned requirements, compiled kernel;
#   2. the untrained seed checkpoint models/seed_untrained.pt, if missing;
#   3. every archive of archive_configs/ into model_store/ (scripts/build_archive.py; only
#      the models that load_models starts must build);
#   4. TorchServe started in the background from .serve/ (its config, logs, temp files and
#      key_file.json live there, never in the repository root);
#   5. the KServe front on 127.0.0.1:8090: docker/token_gateway.py --pass-through serves KServe's
#      time-series routes (/v1/timeseries/forecast, /v1/timeseries/models) in front of
#      TorchServe's /predictions/<model>, the client's inference key passed on unchanged
#      (alm_ops.launcher start-front; pid in .serve/gateway.pid, log in .serve/logs/gateway.log);
#   6. waits until every worker of the models in config.properties' load_models is READY
#      (management API, not /ping; alm_ops.launcher wait-ready) and the front answers, then
#      prints where to send requests and how to get a token.
# Stop it with scripts/stop.sh.
#   scripts/serve.sh [--no-setup]     (--no-setup: skip step 1 when the venv is known good)
# SERVE_OVERRIDES="key=value ..." changes config.properties settings for this run only, e.g.
#   SERVE_OVERRIDES="grpc_inference_port=17070 grpc_management_port=17071" scripts/serve.sh
# ALM_GATEWAY_LISTEN=HOST:PORT moves the front (default 127.0.0.1:8090: loopback only).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN="$ROOT/.serve"
PY="$ROOT/.venv/bin/python"
READY_TIMEOUT=${READY_TIMEOUT:-300}
FRONT=${ALM_GATEWAY_LISTEN:-127.0.0.1:8090}

if [ "${1:-}" != "--no-setup" ]; then
  scripts/setup_env.sh
fi

export TMPDIR="$RUN/tmp" TEMP="$RUN/tmp" LOG_LOCATION="$RUN/logs" METRICS_LOCATION="$RUN/logs"
PID_FILE="$TMPDIR/.model_server.pid"
if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "TorchServe is already running (pid $(cat "$PID_FILE")); stop it first with scripts/stop.sh." >&2
  exit 1
fi

if [ ! -f models/seed_untrained.pt ]; then
  echo "Making the UNTRAINED seed checkpoint models/seed_untrained.pt ..."
  "$PY" scripts/make_seed_checkpoint.py models/seed_untrained.pt
fi
MODELS=$("$PY" scripts/serve_config.py --models)
REQUIRE=()
for model in $MODELS; do REQUIRE+=(--require "$model"); done
# Every model of archive_configs/; only those loaded at start must succeed.
"$PY" scripts/build_archive.py "${REQUIRE[@]}"

# A fresh run: old logs would only confuse, and a key_file.json left by a crash holds dead keys.
rm -rf "$RUN/tmp" "$RUN/logs" "$RUN/key_file.json"
mkdir -p "$RUN/tmp" "$RUN/logs"
SETS=()
for item in ${SERVE_OVERRIDES:-}; do SETS+=(--set "$item"); done
"$PY" scripts/serve_config.py "$RUN/config.properties" --model-store "$ROOT/model_store" "${SETS[@]}"

START=$(date +%s.%N)
# The JVM inherits the launcher's output: send it to a file, never a pipe. setsid keeps the
# server out of this terminal's process group (closing the terminal does not stop it).
SETSID=$(command -v setsid || true)
(cd "$RUN" && $SETSID "$ROOT/.venv/bin/torchserve" --start --ncs --ts-config config.properties \
  >"$RUN/torchserve.out" 2>&1 </dev/null)

"$PY" -m alm_ops.launcher start-front "$RUN" --listen "$FRONT"
"$PY" -m alm_ops.launcher wait-ready "$RUN" $MODELS --timeout "$READY_TIMEOUT" --started "$START" \
  --front "http://$FRONT"
