#!/usr/bin/env bash
# Entrypoint of the container image (run under tini): start TorchServe in the foreground.
#
#   (no arguments)   render docker/config.properties into $ALM_RUN_DIR, check that the archives
#                    named in load_models are in the model store, exec TorchServe there (its
#                    working directory, so key_file.json lands in $ALM_RUN_DIR)
#   COMMAND ...      run that instead (e.g. the Kubernetes gateway sidecar:
#                    /opt/alm/.venv/bin/python /opt/alm/docker/token_gateway.py)
#
# Environment (all optional):
#   ALM_RUN_DIR             TorchServe's working directory: config, key_file.json, logs/
#                           (default /home/model-server/run; must be writable)
#   ALM_MODEL_STORE         directory of .mar archives (default /opt/alm/model_store, baked into
#                           the image; mount a model-registry volume and point this at it)
#   ALM_LOAD_MODELS         TorchServe's load_models (default: the config's, sp500_xlstm)
#   ALM_MANAGEMENT_ADDRESS  e.g. http://127.0.0.1:8081 to keep the management API inside the
#                           container/pod (default: the config's 0.0.0.0:8081)
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

# The same renderer as scripts/serve.sh (scripts/serve_config.py), on the container template.
# It prints the archive files named in load_models, one per line, for the check below.
ARCHIVES=$(
  "$PYTHON" - "$APP_DIR" "$MODEL_STORE" "$CONFIG" <<'PY'
import os
import sys
from pathlib import Path

app, store, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
sys.path.insert(0, str(app))
from scripts.serve_config import read_properties, render  # noqa: E402

overrides = {}
for env, key in (("ALM_LOAD_MODELS", "load_models"), ("ALM_MANAGEMENT_ADDRESS", "management_address")):
    if os.environ.get(env):
        overrides[key] = os.environ[env]
out.write_text(render(store, overrides, template=app / "docker" / "config.properties"))
for entry in read_properties(out).get("load_models", "").split(","):
    entry = entry.strip()
    if entry and entry not in ("ALL", "all"):
        print(entry.split("=", 1)[-1])
PY
)

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
