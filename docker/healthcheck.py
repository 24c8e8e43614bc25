#!/usr/bin/env python3
"""Health of the TorchServe running in this container (or pod), for Docker and Kubernetes probes.

    healthcheck.py [ready]   exit 0 when every expected model has >= --min-ready workers READY
    healthcheck.py live      exit 0 when the TorchServe front end answers HTTP at all

``ready`` asks the management API (GET /models/<name>) with the management key read from
TorchServe's key file (key_file.json in its working directory, ``$ALM_RUN_DIR``): /ping is not
enough, it is answered while workers are still loading or restarting. The expected models are
``--model`` (repeatable), else ``$ALM_HEALTH_MODELS`` (comma-separated), else every model
registered; no model registered is "not ready". ``live`` only checks that the front end
answers /ping on the inference port (any HTTP status counts: a model whose workers restart is
the readiness probe's business, not a reason to kill the container).

TorchServe's management and inference keys expire (token_expiration_min). When the management
key is refused, this asks TorchServe for a new one with the API key (GET /token?type=management,
which rewrites the key file) and tries once more: every reader of the key file sees the new key.

Standard library only (it runs every few seconds). Prints one line; exit 0 healthy, 1 not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DEFAULT_RUN_DIR = "/home/model-server/run"
KEY_FILE_NAME = "key_file.json"
#: What TorchServe 0.12 answers (HTTP 400) for a missing, wrong or expired key.
KEY_REFUSED_MARKERS = ("InvalidKeyException", "Token Authorization failed")


class Unhealthy(Exception):
    """Why the check failed (one line)."""


def read_keys(key_file: Path) -> dict[str, str]:
    """{"management": ..., "inference": ..., "API": ...} from TorchServe's key_file.json."""
    try:
        data = json.loads(key_file.read_text())
        return {kind: str(data[kind]["key"]) for kind in ("management", "inference", "API")}
    except FileNotFoundError:
        raise Unhealthy(f"{key_file} does not exist (TorchServe not started yet?)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Unhealthy(f"{key_file}: cannot read the keys: {exc}") from None


def http_get(url: str, token: str | None, timeout: float) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are returned, connection errors raise Unhealthy."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - local URL
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unhealthy(f"{url}: no answer ({reason})") from None


def key_refused(status: int, body: bytes) -> bool:
    text = body.decode("utf-8", "replace")
    return status in (400, 401) and any(marker in text for marker in KEY_REFUSED_MARKERS)


def management_get(base: str, path: str, key_file: Path, timeout: float) -> tuple[int, bytes]:
    """GET on the management API with the current key, renewing an expired key once."""
    keys = read_keys(key_file)
    status, body = http_get(base + path, keys["management"], timeout)
    if not key_refused(status, body):
        return status, body
    fresh = read_keys(key_file)  # someone else may have renewed it already
    if fresh["management"] == keys["management"]:
        renew_status, renew_body = http_get(base + "/token?type=management", fresh["API"], timeout)
        if renew_status != 200:
            raise Unhealthy(f"management key refused and renewing it failed: HTTP {renew_status} {short(renew_body)}")
        fresh = read_keys(key_file)
    return http_get(base + path, fresh["management"], timeout)


def short(body: bytes, limit: int = 200) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


def check_ready(management: str, key_file: Path, models: list[str], min_ready: int, timeout: float) -> str:
    if not models:
        status, body = management_get(management, "/models?limit=1000", key_file, timeout)
        if status != 200:
            raise Unhealthy(f"GET /models: HTTP {status} {short(body)}")
        models = [entry["modelName"] for entry in json.loads(body).get("models", [])]
        if not models:
            raise Unhealthy("no model registered")
    summary = []
    for model in models:
        status, body = management_get(management, f"/models/{urllib.parse.quote(model, safe='')}", key_file, timeout)
        if status != 200:
            raise Unhealthy(f"model {model}: HTTP {status} {short(body)}")
        try:
            description = json.loads(body)[0]
            workers = description.get("workers") or []
            ready = sum(1 for worker in workers if worker.get("status") == "READY")
        except (ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
            raise Unhealthy(f"model {model}: unexpected answer {short(body)} ({exc})") from None
        if ready < min_ready:
            states = ", ".join(str(worker.get("status")) for worker in workers) or "no workers"
            raise Unhealthy(f"model {model}: {ready} of {len(workers)} workers READY (need {min_ready}): {states}")
        summary.append(f"{model} {ready}/{len(workers)} READY")
    return "ready: " + "; ".join(summary)


def check_live(inference: str, key_file: Path, timeout: float) -> str:
    try:
        token = read_keys(key_file)["inference"]
    except Unhealthy:
        token = None  # still answers (400) without a key: the front end is what is checked
    status, body = http_get(inference + "/ping", token, timeout)
    return f"alive: /ping answered HTTP {status} {short(body, 80)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=["ready", "live"], default="ready")
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=Path(os.environ.get("ALM_RUN_DIR", DEFAULT_RUN_DIR)),
        help="TorchServe's working directory, where key_file.json is ($ALM_RUN_DIR)",
    )
    parser.add_argument("--key-file", type=Path, help="the key file (default: RUN_DIR/key_file.json)")
    parser.add_argument("--management", default=os.environ.get("ALM_HEALTH_MANAGEMENT_URL", "http://127.0.0.1:8081"))
    parser.add_argument("--inference", default=os.environ.get("ALM_HEALTH_INFERENCE_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--model", action="append", default=[], help="model that must be ready (repeatable)")
    parser.add_argument(
        "--min-ready",
        type=int,
        default=int(os.environ.get("ALM_HEALTH_MIN_READY", "1")),
        help="READY workers each model needs (default 1)",
    )
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds per HTTP call")
    args = parser.parse_args(argv)
    key_file = args.key_file or args.run_dir / KEY_FILE_NAME
    models = args.model or [m.strip() for m in os.environ.get("ALM_HEALTH_MODELS", "").split(",") if m.strip()]
    try:
        if args.mode == "live":
            message = check_live(args.inference.rstrip("/"), key_file, args.timeout)
        else:
            message = check_ready(args.management.rstrip("/"), key_file, models, max(1, args.min_ready), args.timeout)
    except Unhealthy as exc:
        print(f"unhealthy: {exc}")
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
