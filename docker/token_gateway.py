#!/usr/bin/env python3
"""Inference gateway: one stable client token (a Kubernetes Secret) in front of TorchServe's own.

TorchServe 0.12 keeps token authorisation on, but it draws its keys at random at every start
(key_file.json in its working directory) and lets them expire (token_expiration_min): behind a
Service that spreads requests over several pods, no client could know the key of the pod it
reaches. This sidecar, in the same pod as TorchServe, is what the Service points at:

* it accepts a request only with ``Authorization: Bearer <token>`` where the token is one of
  the lines of ``--token-file`` (the mounted Secret; re-read when it changes, so a rotated
  Secret takes effect without a restart, and two lines let old and new overlap);
* it forwards only the inference API (``/ping``, ``/predictions/...``) to TorchServe on
  loopback with the pod's own inference key from key_file.json; the management API is never
  reachable through it;
* when TorchServe refuses that key (expired), it re-reads the key file and, if nobody renewed
  it yet, asks TorchServe for a new one with the API key (``/token?type=inference`` on the
  loopback management port), then retries once.

TorchServe's token authorisation stays on; the pod-local keys never leave the pod.

    token_gateway.py [--listen 0.0.0.0:8090] [--token-file /etc/alm/token/token]
                     [--run-dir DIR] [--inference URL] [--management URL]

Standard library only.
"""

from __future__ import annotations

import argparse
import hmac
import http.client
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("token_gateway")

#: Paths of TorchServe's inference API that are forwarded (everything else is 404 here).
FORWARDED_PREFIXES = ("/predictions/",)
FORWARDED_EXACT = ("/ping",)
#: Same ceiling as config.properties' max_request_size.
MAX_BODY = 10 * 1024 * 1024
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "host",
    "content-length",
}
KEY_REFUSED_MARKERS = (b"InvalidKeyException", b"Token Authorization failed")


class FileCache:
    """A small file's parsed content, re-read when its mtime or size changes."""

    def __init__(self, path: Path, parse):
        self.path = path
        self.parse = parse
        self._stamp = None
        self._value = None
        self._lock = threading.Lock()

    def get(self, force: bool = False):
        with self._lock:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if force or stamp != self._stamp:
                self._value = self.parse(self.path.read_text())
                self._stamp = stamp
            return self._value


def parse_tokens(text: str) -> list[str]:
    tokens = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not tokens:
        raise ValueError("the token file holds no token")
    return tokens


def parse_keys(text: str) -> dict[str, str]:
    data = json.loads(text)
    return {"inference": str(data["inference"]["key"]), "API": str(data["API"]["key"])}


class Gateway:
    def __init__(self, token_file: Path, key_file: Path, inference: str, management: str, timeout: float = 120.0):
        self.tokens = FileCache(token_file, parse_tokens)
        self.keys = FileCache(key_file, parse_keys)
        self.inference = urllib.parse.urlsplit(inference)
        self.management = urllib.parse.urlsplit(management)
        self.timeout = timeout
        self._renew_lock = threading.Lock()

    def authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        offered = header[len("Bearer ") :].strip().encode()
        ok = False
        for token in self.tokens.get():  # compare with every token: constant time overall
            ok |= hmac.compare_digest(offered, token.encode())
        return ok

    def _call(
        self, base: urllib.parse.SplitResult, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(base.hostname, base.port, timeout=self.timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def renew_inference_key(self, refused_key: str) -> None:
        """Make key_file.json hold a valid inference key (renew once, whoever comes first)."""
        with self._renew_lock:
            if self.keys.get(force=True)["inference"] != refused_key:
                return  # renewed meanwhile (by another request or by an operator)
            status, _, body = self._call(
                self.management,
                "GET",
                "/token?type=inference",
                None,
                {"Authorization": f"Bearer {self.keys.get()['API']}"},
            )
            if status != 200:
                raise RuntimeError(f"renewing the inference key failed: HTTP {status} {body[:200]!r}")
            self.keys.get(force=True)

    def forward(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
        key = self.keys.get()["inference"]
        result = self._call(self.inference, method, path, body, {**headers, "Authorization": f"Bearer {key}"})
        status, _, payload = result
        if status in (400, 401) and any(marker in payload for marker in KEY_REFUSED_MARKERS):
            self.renew_inference_key(key)
            key = self.keys.get()["inference"]
            result = self._call(self.inference, method, path, body, {**headers, "Authorization": f"Bearer {key}"})
        return result


class Handler(BaseHTTPRequestHandler):
    server_version = "alm-token-gateway"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    gateway: Gateway  # set on the subclass made by make_server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        log.info("%s %s", self.address_string(), format % args)

    def reply(self, status: int, payload: dict, extra: dict[str, str] | None = None) -> None:
        """The gateway's own (error) answer; the connection is closed (a request body may be unread)."""
        body = (json.dumps(payload) + "\n").encode()
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def handle_any(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if not (path in FORWARDED_EXACT or path.startswith(FORWARDED_PREFIXES)) or "/../" in path + "/":
            self.reply(404, {"code": 404, "type": "NotFound", "message": "only the inference API is served here"})
            return
        try:
            allowed = self.gateway.authorised(self.headers.get("Authorization"))
        except (OSError, ValueError) as exc:
            log.error("cannot read the client tokens: %s", exc)
            self.reply(503, {"code": 503, "type": "ServiceUnavailable", "message": "gateway tokens unavailable"})
            return
        if not allowed:
            self.reply(
                401,
                {"code": 401, "type": "Unauthorized", "message": "missing or wrong bearer token"},
                {"WWW-Authenticate": 'Bearer realm="alm-forecaster"'},
            )
            return
        if self.headers.get("Transfer-Encoding"):
            self.reply(411, {"code": 411, "type": "LengthRequired", "message": "send a Content-Length"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            self.reply(413, {"code": 413, "type": "PayloadTooLarge", "message": f"body over {MAX_BODY} bytes"})
            return
        body = self.rfile.read(length) if length else None
        headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
        try:
            status, response_headers, payload = self.gateway.forward(self.command, self.path, body, headers)
        except (OSError, http.client.HTTPException, RuntimeError, ValueError, KeyError) as exc:
            log.error("upstream failure: %s", exc)
            self.reply(502, {"code": 502, "type": "BadGateway", "message": "TorchServe is not answering"})
            return
        self.send_response(status)
        for name, value in response_headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = handle_any  # noqa: N815 - http.server's names


def make_server(listen: tuple[str, int], gateway: Gateway) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"gateway": gateway})
    server = ThreadingHTTPServer(listen, handler)
    server.daemon_threads = True
    return server


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    parser.add_argument("--listen", default=env("ALM_GATEWAY_LISTEN", "0.0.0.0:8090"))
    parser.add_argument("--token-file", type=Path, default=Path(env("ALM_GATEWAY_TOKEN_FILE", "/etc/alm/token/token")))
    parser.add_argument("--run-dir", type=Path, default=Path(env("ALM_RUN_DIR", "/home/model-server/run")))
    parser.add_argument("--inference", default=env("ALM_GATEWAY_INFERENCE_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--management", default=env("ALM_GATEWAY_MANAGEMENT_URL", "http://127.0.0.1:8081"))
    parser.add_argument("--timeout", type=float, default=float(env("ALM_GATEWAY_TIMEOUT_S", "120")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        parse_tokens(args.token_file.read_text())
    except (OSError, ValueError) as exc:
        print(f"error: {args.token_file}: {exc}", file=sys.stderr)
        return 2
    gateway = Gateway(args.token_file, args.run_dir / "key_file.json", args.inference, args.management, args.timeout)
    server = make_server(parse_listen(args.listen), gateway)
    log.info("listening on %s:%d, forwarding the inference API to %s", *server.server_address[:2], args.inference)
    # SIGTERM (pod shutdown): stop accepting, let serve_forever return.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    started = time.monotonic()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        log.info("stopped after %.0f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
