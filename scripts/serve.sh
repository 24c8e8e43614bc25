#!/usr/bin/env bash
# One command from a fresh machine to a running TorchServe with the default model:
#   1. scripts/setup_env.sh: Java check, .venv, pinned requirements, compiled kernel;
#   2. the untrained seed checkpoint models/seed_untrained.pt, if missing;
#   3. every archive of archive_configs/ into model_store/ (scripts/build_archive.py; only
#      the models that load_models starts must build);
#   4. TorchServe started in the background from .serve/ (its config, logs, temp files and
#      key_file.json live there, never in the repository root);
#   5. waits until every worker of the models in config.properties' load_models is READY
#      (management API, not /ping), then prints where to send requests and how to get a token.
# Stop it with scripts/stop.sh.
#   scripts/serve.sh [--no-setup]     (--no-setup: skip step 1 when the venv is known good)
# SERVE_OVERRIDES="key=value ..." changes config.properties settings for this run only, e.g.
#   SERVE_OVERRIDES="grpc_inference_port=17070 grpc_management_port=17071" scripts/serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN="$ROOT/.serve"
PY="$ROOT/.venv/bin/python"
READY_TIMEOUT=${READY_TIMEOUT:-300}

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

"$PY" - "$RUN" "$READY_TIMEOUT" "$START" $MODELS <<'EOF'
"""Wait until every worker of the given models is READY, then say how to use the server."""
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

run, timeout, start, models = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
props = dict(line.split("=", 1) for line in (run / "config.properties").read_text().splitlines()
             if "=" in line and not line.startswith("#"))
management, inference, metrics = (props[f"{k}_address"] for k in ("management", "inference", "metrics"))
pid_file = run / "tmp" / ".model_server.pid"


def tail(path: Path, n: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""


def fail(why: str) -> None:
    print(f"error: {why}", file=sys.stderr)
    out = run / "torchserve.out"
    causes = [line for line in (out.read_text(errors="replace").splitlines() if out.exists() else [])
              if "Failed to bind" in line or "Address already in use" in line or "Exception:" in line]
    if causes:
        print("cause:\n  " + "\n  ".join(dict.fromkeys(causes[:5])), file=sys.stderr)
    for log in (run / "torchserve.out", run / "logs" / "ts_log.log", run / "logs" / "model_log.log"):
        if log.exists():
            print(f"--- last lines of {log} ---\n{tail(log)}", file=sys.stderr)
    print("Stop what started with scripts/stop.sh.", file=sys.stderr)
    sys.exit(1)


def alive() -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


deadline = time.monotonic() + timeout
status = {m: "not registered yet" for m in models}
key = None
while time.monotonic() < deadline:
    time.sleep(0.25)
    if not alive():
        fail("TorchServe exited while starting (a port in use? see below)")
    if key is None:
        try:
            key = json.loads((run / "key_file.json").read_text())["management"]["key"]
        except (OSError, ValueError, KeyError):
            continue
    for model in models:
        request = urllib.request.Request(f"{management}/models/{model}", headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                workers = json.load(response)[0]["workers"]
            status[model] = ",".join(w["status"] for w in workers) or "no workers"
        except urllib.error.HTTPError as exc:
            status[model] = f"HTTP {exc.code}"
            key = None if exc.code == 400 else key  # token refused: read key_file.json again
        except (urllib.error.URLError, OSError, ValueError) as exc:
            status[model] = f"not answering ({exc})"
    if all(s and set(s.split(",")) == {"READY"} for s in status.values()):
        break
else:
    fail(f"workers not READY after {timeout:.0f} s: {status}")

elapsed = time.time() - start
keys = run / "key_file.json"
model = models[0]
# A ready-to-send example window for the first model: its own input size and window length,
# deterministic pseudo-random embeddings (numbers only: forecasts of it mean nothing).
example = run / f"example_{model}.csv"
request = urllib.request.Request(f"{management}/models/{model}?customized=true",
                                 headers={"Authorization": f"Bearer {key}"})
with urllib.request.urlopen(request, timeout=30) as response:
    meta = json.load(response)[0].get("customizedMetadata") or {}
if isinstance(meta, str):
    meta = json.loads(meta)
width, rows = meta["config"]["input_size"], meta["seq_len"]
state, lines, price = 12345, [",".join([f"emb_{i}" for i in range(width)] + ["last_price"])], 100.0
for _ in range(rows):
    cells = []
    for _ in range(width):
        state = (1103515245 * state + 12345) % 2**31
        cells.append(f"{state / 2**30 - 1:.6f}")
    price *= 1.0 + (state % 2001 - 1000) / 100000
    lines.append(",".join(cells + [f"{price:.4f}"]))
example.write_text("\n".join(lines) + "\n")
accepts = " or ".join(meta.get("accepts") or ["embeddings"])
print(f"""
TorchServe is up: {', '.join(models)} READY in {elapsed:.1f} s.
  inference   {inference}/predictions/<model>      (models: {', '.join(models)})
  management  {management}/models
  metrics     {metrics}/metrics                     (Prometheus, no token)
Tokens (Authorization: Bearer <key>) are in {keys}:
  INF=$(python3 -c "import json;print(json.load(open('{keys}'))['inference']['key'])")
  MGT=$(python3 -c "import json;print(json.load(open('{keys}'))['management']['key'])")
Forecast ({model} takes CSVs of {accepts}; an example window for it: {example}):
  curl -H "Authorization: Bearer $INF" -F data=@{example} {inference}/predictions/{model}
  curl -H "Authorization: Bearer $INF" -H 'Content-Type: text/csv' --data-binary @{example} \\
       {inference}/predictions/{model}
Logs: {run / 'logs'}    Stop: scripts/stop.sh""")
EOF
