#!/usr/bin/env bash
# Entrypoint of the container image (run under tini): start TorchServe in the foreground.
#
#   (no arguments)   render the repository's config.properties into $ALM_RUN_DIR with the three
#                    HTTP APIs listening on 0.0.0.0, check that the archives named in load_models
#                    are in the model store, exec TorchServe there (its working directory, so
#                    key_file.json lands in $ALM_RUN_DIR)
#   COMMAND ...      run that instead (e.g. the Kubernetes gateway sidecar:
#                    /opt/alm/.venv/bin/python /opt/alm/docker/token_gateway.py)
#
# 0.0.0.0 is INSIDE the container's own network namespace only: that is what lets Docker publish
# the ports and Kubernetes route to the pod. It is NOT an invitation to expose them: publish them
# on 127.0.0.1 (compose.yaml does: "127.0.0.1:8080:8080") or on a private network only, never on
# a public interface. The management API (8081) registers archives, i.e. runs code: keep it off
# every network you do not fully control (the Kubernetes manifests bind it to 127.0.0.1 inside
# the pod with ALM_MANAGEMENT_ADDRESS). The metrics endpoint (8082) has no token. gRPC stays on
# loopback inside the container (not published, not exposed). Every other setting is the
# repository's.
#
# Environment (all optional):
#   ALM_RUN_DIR             TorchServe's working directory: config, key_file.json, logs/
#                           (default /home/model-server/run; must be writable)
#   ALM_MODEL_STORE         directory of .mar archives (default /opt/alm/model_store, baked into
#                           the image; mount a model-registry volume and point this at it)
#   ALM_LOAD_MODELS         TorchServe's load_models (default: the config's, alm_quantiles and sp500_xlstm)
#   ALM_MANAGEMENT_ADDRESS  e.g. http://127.0.0.1:8081 to keep the management API inside the
#                           container/pod (default: 0.0.0.0:8081)
set -euo pipefail

APP_DIR=${ALM_APP_DIR:-/opt/alm}
PYTHON="$APP_DIR/.venv/bin/python"

if [ "$#" -gt 0 ]; then
  exec "$@"
fi

RUN_DIR=${ALM_RUN_DIR:-/home/model-server/run}
MODEL_STORE=${ALM_MODEL_STORE:-$APP_DIR/model_store}
CONFIG="$RUN_DIR/config.properties"

mkdir -p "$RUN_DIR/logs" "${TMPDIR:-/tmp}"
cd "$RUN_DIR"
# Keys of an earlier run (a reused volume) are stale: TorchServe writes new ones at start, and
# the health check must not read the old ones meanwhile.
rm -f key_file.json

# The same renderer as scripts/serve.sh (alm_ops.serve_config); it prints the archive files
# named in load_models, one per line, for the check below.
SETS=()
if [ -n "${ALM_LOAD_MODELS:-}" ]; then SETS+=(--set "load_models=$ALM_LOAD_MODELS"); fi
if [ -n "${ALM_MANAGEMENT_ADDRESS:-}" ]; then SETS+=(--set "management_address=$ALM_MANAGEMENT_ADDRESS"); fi
ARCHIVES=$("$PYTHON" -m alm_ops.serve_config "$CONFIG" --app-dir "$APP_DIR" --model-store "$MODEL_STORE" \
  --listen 0.0.0.0 "${SETS[@]}" --archives)

missing=0
for archive in $ARCHIVES; do
  case "$archive" in
    *://*) ;;  # a URL: TorchServe checks it against allowed_urls
    *) if [ ! -e "$MODEL_STORE/$archive" ]; then
         echo "entrypoint: $MODEL_STORE/$archive not found (load_models names it)" >&2
         missing=1
       fi ;;
  esac
done
if [ "$missing" -ne 0 ]; then
  echo "entrypoint: archives in $MODEL_STORE:" >&2
  ls -l "$MODEL_STORE" >&2 || true
  exit 1
fi

export LOG_LOCATION="$RUN_DIR/logs" METRICS_LOCATION="$RUN_DIR/logs"
echo "entrypoint: TorchServe with $CONFIG, model store $MODEL_STORE, keys in $RUN_DIR/key_file.json" >&2
exec "$APP_DIR/.venv/bin/torchserve" --start --foreground --no-config-snapshots \
  --ts-config "$CONFIG" --model-store "$MODEL_STORE"
