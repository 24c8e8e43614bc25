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
  loopback management port), then retries once;
* when TorchServe answers its own ``Worker died.`` (500/507 with TorchServe's body: the worker
  holding the request stopped under it, as in a scale-down or a crash), it sends the request
  again, up to 3 more times with a growing delay: a forecast is a pure function of its input.
  The handler's own errors (``{"error": ...}``) are passed on as they are;
* on SIGTERM (pod shutdown) it drains: it stops accepting connections, finishes every request
  it holds (each answer then closes its connection) and exits when none is left, or after
  ``--drain-timeout`` seconds. TorchServe 0.12 does not drain itself (a SIGTERM drops what it is
  processing), so the TorchServe container's preStop hook (docker/prestop.py) waits until this
  gateway is gone before TorchServe is stopped.

TorchServe's token authorisation stays on; the pod-local keys never leave the pod.

    token_gateway.py [--listen 0.0.0.0:8090] [--token-file /etc/alm/token/token]
                     [--run-dir DIR] [--inference URL] [--management URL] [--drain-timeout 30]

Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import http.client
import json
import logging
import os
import random
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
#: More attempts for a request TorchServe answered "Worker died.", and the first delay (doubled).
WORKER_DIED_RETRIES = 3
WORKER_DIED_BACKOFF_S = 0.2
#: Seconds the gateway must stay without a request before a draining gateway exits.
DRAIN_SETTLE_S = 0.2


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


def worker_died(status: int, payload: bytes) -> bool:
    """TorchServe's own ``{"code": 500|507, "type": ..., "message": "Worker died."}``, never the
    handler's ``{"error": ...}``; the same rule as alm_ops.api.worker_died (this file imports
    nothing of the repository: it runs in the image and in probes)."""
    if status not in (500, 507):
        return False
    try:
        body = json.loads(payload)
    except ValueError:
        return False
    return isinstance(body, dict) and "error" not in body and body.get("message") == "Worker died."


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
        #: set on SIGTERM: every answer closes its connection from then on
        self.draining = threading.Event()
        self._active = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def holding(self):
        """A request being handled: `wait_idle` waits for the end of every such block."""
        with self._idle:
            self._active += 1
        try:
            yield
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no request is being handled; False when ``timeout`` seconds passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active == 0, timeout)

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
        for attempt in range(WORKER_DIED_RETRIES + 1):
            if attempt:
                delay = WORKER_DIED_BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.9, 1.1)
                log.info("%s %s: TorchServe answered 'Worker died.', again in %.2f s", method, path, delay)
                time.sleep(delay)
            result = self._forward_once(method, path, body, headers)
            if not worker_died(result[0], result[2]):
                break
        return result

    def _forward_once(self, method: str, path: str, body: bytes | None, headers: dict[str, str]):
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
        with self.gateway.holding():
            self._handle()

    def _handle(self) -> None:
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
        if self.gateway.draining.is_set():  # the client's next request goes to another pod
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = handle_any  # noqa: N815 - http.server's names


def make_server(listen: tuple[str, int], gateway: Gateway) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"gateway": gateway})
    server = ThreadingHTTPServer(listen, handler)
    server.daemon_threads = True
    return server


def drain(server: ThreadingHTTPServer, gateway: Gateway, timeout: float) -> bool:
    """After ``serve_forever`` returned: take the connections already queued on the listening
    socket (clients whose connect succeeded), close it (later ones are refused, never accepted),
    then wait until no request is being handled. True when drained within ``timeout``."""
    gateway.draining.set()
    server.socket.setblocking(False)
    while True:
        try:
            connection, address = server.socket.accept()
        except OSError:
            break
        connection.setblocking(True)
        server.process_request(connection, address)
    server.server_close()
    deadline = time.monotonic() + timeout
    # A kept-alive connection may bring one more request just after the last answer: the gateway
    # is idle only when it stays idle for a moment.
    while gateway.wait_idle(max(0.0, deadline - time.monotonic())):
        time.sleep(DRAIN_SETTLE_S)
        if gateway.wait_idle(0):
            return True
    return False


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
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=float(env("ALM_GATEWAY_DRAIN_S", "30")),
        help="seconds a SIGTERM waits for the requests in hand (default 30)",
    )
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
    # SIGTERM (pod shutdown): make serve_forever return, then drain.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    started = time.monotonic()
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    drained = drain(server, gateway, args.drain_timeout)
    log.info(
        "stopped after %.0f s%s",
        time.monotonic() - started,
        "" if drained else f"; requests still in hand after {args.drain_timeout:g} s",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
