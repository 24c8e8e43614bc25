"""What the deployment tests share: the repository's paths, the tools they run, a fake TorchServe.

There is no Docker engine and no cluster here, so the artefacts are checked the way they can be
without one, and every check that CAN run here does: the PyPI tools (requirements-dev.txt pins
them into the virtual environment) are never skipped, a Debian tool (scripts/setup_env.sh --dev
installs it) skips with its install line only when it is absent, and fails instead under
ALM_REQUIRE_TOOLS=1 (.ci/run): tests/helpers.py's `pypi_tool`, `debian_tool`, `unavailable`.

The fake TorchServe answers as 0.12 does for what the probe and the gateway use: 400
InvalidKeyException for a missing, wrong or expired key, and /token renewal rewriting
key_file.json.
"""

from __future__ import annotations

import hmac
import importlib.util
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

# The one import of the properties reader: the tests take it from here, so its module is named once.
from alm_ops.serve_config import read_properties as read_properties
from tests.helpers import debian_tool as debian_tool
from tests.helpers import pypi_tool as pypi_tool

ROOT = Path(__file__).resolve().parents[2]
#: The image's non-root user (Dockerfile USER, Kubernetes runAsUser).
APP_UID = 10001


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, **kwargs)


def load_module(path: Path):
    """A script of docker/ (not a package: the image runs them as files) imported by its path."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


INVALID_KEY = {
    "code": 400,
    "type": "InvalidKeyException",
    "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly",
}


class FakeTorchServe:
    """Management and inference APIs on loopback with TorchServe 0.12's token behaviour.

    ``keys`` are the current keys, ``expired`` the kinds whose key the server refuses until it is
    renewed, ``models`` each model's worker states, ``seen`` every request as (api, "METHOD path",
    Authorization header, body). ``answers`` are the next (status, body) of /predictions (then it
    echoes), ``delay_s`` how long each prediction takes.
    """

    def __init__(self, workdir: Path):
        self.key_file = workdir / "key_file.json"
        self.keys = {"management": "m-1", "inference": "i-1", "API": "api-1"}
        self.expired: set[str] = set()
        self.models: dict[str, list[str]] = {"seed_untrained": ["READY"]}
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        self.answers: list[tuple[int, dict]] = []
        self.delay_s = 0.0
        self.counter = 1
        self.write_keys()
        self.servers = [self._serve("management"), self._serve("inference")]
        self.management_url, self.inference_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self.servers)

    def write_keys(self):
        self.key_file.write_text(
            json.dumps(
                {
                    "management": {"key": self.keys["management"], "expiration time": "2099-01-01T00:00:00Z"},
                    "inference": {"key": self.keys["inference"], "expiration time": "2099-01-01T00:00:00Z"},
                    "API": {"key": self.keys["API"]},
                },
                indent=2,
            )
        )

    def _serve(self, api: str) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                fake.seen.append((api, self.command + " " + self.path, self.headers.get("Authorization"), body))
                if api == "management" and url.path == "/token":
                    if not self.token_ok("API"):
                        return self.answer(400, INVALID_KEY)
                    fake.renew(parse_qs(url.query)["type"][0])
                    return self.answer(200, {})
                if not self.token_ok(api):
                    return self.answer(400, INVALID_KEY)
                if api == "management" and url.path == "/models":
                    return self.answer(200, {"models": [{"modelName": m, "modelUrl": f"{m}.mar"} for m in fake.models]})
                if api == "management" and url.path.startswith("/models/"):
                    name = url.path.split("/")[2]
                    if name not in fake.models:
                        return self.answer(
                            404, {"code": 404, "type": "ModelNotFoundException", "message": f"Model not found: {name}"}
                        )
                    workers = [{"id": str(9000 + i), "status": s} for i, s in enumerate(fake.models[name])]
                    return self.answer(200, [{"modelName": name, "minWorkers": 1, "workers": workers}])
                if api == "inference" and url.path == "/ping":
                    return self.answer(200, {"status": "Healthy"})
                if api == "inference" and url.path.startswith("/predictions/"):
                    time.sleep(fake.delay_s)
                    if fake.answers:
                        return self.answer(*fake.answers.pop(0))
                    return self.answer(
                        200,
                        {
                            "model": url.path.split("/")[2],
                            "bytes": len(body),
                            "content_type": self.headers.get("Content-Type"),
                        },
                    )
                return self.answer(404, {"code": 404, "type": "ResourceNotFoundException", "message": "none"})

            def token_ok(self, kind):
                header = self.headers.get("Authorization") or ""
                offered = header[len("Bearer ") :] if header.startswith("Bearer ") else None
                if offered is None or kind in fake.expired:
                    return False
                return hmac.compare_digest(offered, fake.keys[kind])

            def answer(self, status, payload):
                body = json.dumps(payload, indent=2).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return server

    def renew(self, kind: str):
        self.counter += 1
        self.keys[kind] = f"{kind[0]}-{self.counter}"
        self.expired.discard(kind)
        self.write_keys()

    def close(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def fake_ts(tmp_path):
    fake = FakeTorchServe(tmp_path)
    yield fake
    fake.close()
