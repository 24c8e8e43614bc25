#!/usr/bin/env python3
"""Inference gateway: one stable client token (a Kubernetes Secret) in front of TorchServe's own,
and KServe's time-series forecast routes in front of TorchServe's /predictions/<model>.

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
  loopback management port), then retries once (the management key of the KServe model list,
  below, the same way);
* when TorchServe answers its own ``Worker died.`` (500/507 with TorchServe's body: the worker
  holding the request stopped under it, as in a scale-down or a crash), it sends the request
  again, up to 3 more times with a growing delay: a forecast is a pure function of its input.
  The handler's own errors (``{"error": ...}``) are passed on as they are;
* it serves KServe's time-series routes (KServe 0.21.0: ``kserve/protocol/rest/timeseries/``):
  ``POST /v1/timeseries/forecast`` is sent to ``/predictions/<the body's "model">`` with the
  body unchanged, and TorchServe's answer is passed on as it is, except TorchServe's own 404
  for an unknown model and its refusal of a key, which are answered in the protocol's
  ErrorResponse shape (``{"error": {"code": "404", "message", "param", "type"}}``, HTTP status
  equal to ``code``); ``GET /v1/timeseries/models`` is the JSON list of the registered model
  names (TorchServe's management API, with the pod's management key: the only management call
  made, and only this list comes back). A body that is not a JSON object with a string
  ``"model"`` is a 400 ErrorResponse; every error of this gateway on these two routes has that
  shape;
* on SIGTERM (pod shutdown) it drains: it stops accepting connections, finishes every request
  it holds (each answer then closes its connection) and exits when none is left, or after
  ``--drain-timeout`` seconds. TorchServe 0.12 does not drain itself (a SIGTERM drops what it is
  processing), so the TorchServe container's preStop hook (docker/prestop.py) waits until this
  gateway is gone before TorchServe is stopped.

TorchServe's token authorisation stays on; the pod-local keys never leave the pod.

``--pass-through`` (the host's scripts/serve.sh and Compose, where clients hold TorchServe's own
inference key): no client token file; the client's ``Authorization`` header goes to TorchServe
unchanged and TorchServe decides (its own 400 for a missing, wrong or expired key; on the KServe
routes in the ErrorResponse shape). ``GET /v1/timeseries/models`` first asks TorchServe's
``/ping`` with the client's header, so the list needs the same key as a forecast. The key file
is read for the management key only (the model list). Listens on 127.0.0.1:8090 by default.

    token_gateway.py [--listen 0.0.0.0:8090] [--token-file /etc/alm/token/token | --pass-through]
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
import re
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
#: KServe's time-series forecast protocol (the routes of KServe 0.21.0), answered here.
KSERVE_FORECAST = "/v1/timeseries/forecast"
KSERVE_MODELS = "/v1/timeseries/models"
KSERVE_METHODS = {KSERVE_FORECAST: "POST", KSERVE_MODELS: "GET"}
#: A model name TorchServe can hold (torch-model-archiver's rule): any other name is unknown.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-.]*")
#: Pages of TorchServe's model list read at most (``limit`` names each).
MODEL_LIST_PAGES, MODEL_LIST_LIMIT = 100, 1000
#: Same ceiling as config.properties' max_request_size.
MAX_BODY = 10 * 1024 * 1024
#: Same ceiling as config.properties' max_response_size: a longer answer is not read (502).
MAX_ANSWER = 10 * 1024 * 1024
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
    return {kind: str(data[kind]["key"]) for kind in ("inference", "management", "API")}


def key_refused(status: int, payload: bytes) -> bool:
    """TorchServe 0.12's own answer to a missing, wrong or expired key (HTTP 400
    InvalidKeyException); never the handler's ``{"error": ...}``, which may quote the request."""
    body = torchserve_error(payload) if status in (400, 401) else None
    return body is not None and any(marker in json.dumps(body).encode() for marker in KEY_REFUSED_MARKERS)


def torchserve_error(payload: bytes) -> dict | None:
    """TorchServe's own error body ``{"code", "type", "message"}``; None for anything else (the
    handler's ``{"error": ...}`` included)."""
    try:
        body = json.loads(payload)
    except ValueError:
        return None
    if isinstance(body, dict) and "error" not in body and isinstance(body.get("type"), str):
        return body
    return None


def model_not_found(status: int, payload: bytes) -> bool:
    """TorchServe's own 404 for /predictions/<model> of a model it does not hold."""
    body = torchserve_error(payload) if status == 404 else None
    return body is not None and body["type"] == "ModelNotFoundException"


def error_response(status: int, error_type: str, message: str, param: str = "") -> dict:
    """KServe's time-series ErrorResponse (``kserve/protocol/rest/timeseries/types.py``), built as
    its ``create_error_response`` builds one: ``code`` is the HTTP status as a string."""
    return {"error": {"code": str(status), "message": message, "param": param, "type": error_type}}


def forecast_model(body: bytes | None) -> tuple[str | None, dict | None]:
    """The ``"model"`` of a KServe ForecastRequest body, or the 400 ErrorResponse that refuses it."""
    try:
        document = json.loads(body or b"")
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder's stack
        return None, error_response(400, "BadRequestError", "the body is not JSON (a KServe ForecastRequest)")
    if not isinstance(document, dict):
        return None, error_response(400, "BadRequestError", "the body must be a JSON object (a KServe ForecastRequest)")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        return None, error_response(400, "BadRequestError", 'the request names no model (a string "model")', "model")
    return model, None


class Gateway:
    """``token_file`` None: pass-through (the client's own Authorization goes to TorchServe)."""

    def __init__(
        self, token_file: Path | None, key_file: Path, inference: str, management: str, timeout: float = 120.0
    ):
        self.pass_through = token_file is None
        self.tokens = None if token_file is None else FileCache(token_file, parse_tokens)
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
        if self.pass_through:
            return True  # TorchServe decides
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
            payload = response.read(MAX_ANSWER + 1)
            if len(payload) > MAX_ANSWER:
                raise http.client.HTTPException(f"{method} {path}: an answer over {MAX_ANSWER} bytes")
            return response.status, response.getheaders(), payload
        finally:
            connection.close()

    def renew_key(self, kind: str, refused_key: str) -> None:
        """Make key_file.json hold a valid ``kind`` key (renew once, whoever comes first)."""
        with self._renew_lock:
            if self.keys.get(force=True)[kind] != refused_key:
                return  # renewed meanwhile (by another request or by an operator)
            status, _, body = self._call(
                self.management,
                "GET",
                f"/token?type={kind}",
                None,
                {"Authorization": f"Bearer {self.keys.get()['API']}"},
            )
            if status != 200:
                raise RuntimeError(f"renewing the {kind} key failed: HTTP {status} {body[:200]!r}")
            self.keys.get(force=True)

    def management_get(self, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        """GET on TorchServe's management API with the key file's management key (renewed once
        when TorchServe refuses it)."""
        key = self.keys.get()["management"]
        result = self._call(self.management, "GET", path, None, {"Authorization": f"Bearer {key}"})
        if key_refused(result[0], result[2]):
            self.renew_key("management", key)
            key = self.keys.get()["management"]
            result = self._call(self.management, "GET", path, None, {"Authorization": f"Bearer {key}"})
        return result

    def model_names(self) -> list[str]:
        """The names of the models TorchServe holds (its management API's list, every page)."""
        names: list[str] = []
        token = ""
        for _ in range(MODEL_LIST_PAGES):
            query = f"limit={MODEL_LIST_LIMIT}" + (f"&next_page_token={urllib.parse.quote(token)}" if token else "")
            status, _, payload = self.management_get(f"/models?{query}")
            if status != 200:
                raise RuntimeError(f"listing the models failed: HTTP {status} {payload[:200]!r}")
            page = json.loads(payload)
            names += [str(entry["modelName"]) for entry in page.get("models", [])]
            token = page.get("nextPageToken") or ""
            if not token:
                break
        return list(dict.fromkeys(names))

    def forward(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], client_auth: str | None = None
    ):
        for attempt in range(WORKER_DIED_RETRIES + 1):
            if attempt:
                delay = WORKER_DIED_BACKOFF_S * 2 ** (attempt - 1) * random.uniform(0.9, 1.1)
                log.info("%s %s: TorchServe answered 'Worker died.', again in %.2f s", method, path, delay)
                time.sleep(delay)
            result = self._forward_once(method, path, body, headers, client_auth)
            if not worker_died(result[0], result[2]):
                break
        return result

    def _forward_once(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str], client_auth: str | None
    ):
        if self.pass_through:  # the client's own header, unchanged (none when it sent none)
            return self._call(self.inference, method, path, body, {**headers, **auth_header(client_auth)})
        key = self.keys.get()["inference"]
        result = self._call(self.inference, method, path, body, {**headers, "Authorization": f"Bearer {key}"})
        status, _, payload = result
        if key_refused(status, payload):
            self.renew_key("inference", key)
            key = self.keys.get()["inference"]
            result = self._call(self.inference, method, path, body, {**headers, "Authorization": f"Bearer {key}"})
        return result


def unknown_model(model: str) -> dict:
    """404 for a model TorchServe does not hold; the message is KServe's own (ModelNotFound)."""
    return error_response(404, "NotFound", f"Model with name {model} does not exist.", "model")


def auth_header(value: str | None) -> dict[str, str]:
    return {"Authorization": value} if value is not None else {}


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

    def fail(
        self, kserve: bool, status: int, error_type: str, message: str, extra: dict[str, str] | None = None
    ) -> None:
        """The gateway's own error: KServe's ErrorResponse on the KServe routes, else the shape of
        TorchServe's own errors ``{"code", "type", "message"}``."""
        payload = (
            error_response(status, error_type, message)
            if kserve
            else {"code": status, "type": error_type, "message": message}
        )
        self.reply(status, payload, extra)

    def send(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        """An answer that keeps the connection open (unless the gateway is draining)."""
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.gateway.draining.is_set():  # the client's next request goes to another pod
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def handle_any(self) -> None:
        with self.gateway.holding():
            self._handle()

    def _handle(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        kserve = path in KSERVE_METHODS
        forwarded = path in FORWARDED_EXACT or path.startswith(FORWARDED_PREFIXES)
        if not (kserve or forwarded) or "/../" in path + "/":
            self.reply(404, {"code": 404, "type": "NotFound", "message": "only the inference API is served here"})
            return
        if kserve and self.command != KSERVE_METHODS[path]:
            method = KSERVE_METHODS[path]
            self.fail(True, 405, "MethodNotAllowed", f"{path} takes {method}", {"Allow": method})
            return
        try:
            allowed = self.gateway.authorised(self.headers.get("Authorization"))
        except (OSError, ValueError) as exc:
            log.error("cannot read the client tokens: %s", exc)
            self.fail(kserve, 503, "ServiceUnavailable", "gateway tokens unavailable")
            return
        if not allowed:
            challenge = {"WWW-Authenticate": 'Bearer realm="alm-forecaster"'}
            self.fail(kserve, 401, "Unauthorized", "missing or wrong bearer token", challenge)
            return
        if self.headers.get("Transfer-Encoding"):
            self.fail(kserve, 411, "LengthRequired", "send a Content-Length")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.fail(kserve, 400, "BadRequest", "Content-Length is not a number")
            return
        if length < 0 or length > MAX_BODY:
            self.fail(kserve, 413, "PayloadTooLarge", f"body over {MAX_BODY} bytes")
            return
        body = self.rfile.read(length) if length else None
        try:
            if path == KSERVE_MODELS:
                answer = self.list_models()
            elif path == KSERVE_FORECAST:
                answer = self.forecast(body)
            else:
                headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
                answer = self.gateway.forward(self.command, self.path, body, headers, self.headers.get("Authorization"))
        except (
            OSError,
            http.client.HTTPException,
            RuntimeError,
            ValueError,
            LookupError,
            TypeError,
            AttributeError,
        ) as exc:
            log.error("upstream failure: %s", exc)
            self.fail(kserve, 502, "BadGateway", "no usable answer from TorchServe (see the gateway log)")
            return
        if isinstance(answer, dict):  # the KServe routes' own ErrorResponse
            self.reply(int(answer["error"]["code"]), answer)
        else:
            self.send(*answer)

    def client_refused(self) -> dict | None:
        """Pass-through: TorchServe's refusal of the client's key (asked with /ping, as the
        ErrorResponse of the same status), else None; the gateway's own token was checked before."""
        if not self.gateway.pass_through:
            return None
        status, _, payload = self.gateway.forward("GET", "/ping", None, {}, self.headers.get("Authorization"))
        return self.refusal(status, payload) if key_refused(status, payload) else None

    @staticmethod
    def refusal(status: int, payload: bytes) -> dict:
        """TorchServe's own refusal of a key, as an ErrorResponse of the same status."""
        body = torchserve_error(payload) or {}
        return error_response(status, str(body.get("type") or "InvalidKeyException"), str(body.get("message") or ""))

    def list_models(self):
        """``GET /v1/timeseries/models``: the registered model names, as KServe answers (a JSON list)."""
        refused = self.client_refused()
        if refused:
            return refused
        names = self.gateway.model_names()
        return 200, [("Content-Type", "application/json")], json.dumps(names).encode()

    def forecast(self, body: bytes | None):
        """``POST /v1/timeseries/forecast``: the body, unchanged, to ``/predictions/<its model>``."""
        model, refused = forecast_model(body)
        if refused is not None or not MODEL_NAME.fullmatch(model):
            # Answered here: in pass-through mode TorchServe's verdict on the key comes first.
            refused_key = self.client_refused()
            if refused_key:
                return refused_key
            return refused or unknown_model(model)
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-type"
        }
        headers["Content-Type"] = "application/json"
        path = "/predictions/" + urllib.parse.quote(model, safe="")
        status, response_headers, payload = self.gateway.forward(
            "POST", path, body, headers, self.headers.get("Authorization")
        )
        if model_not_found(status, payload):
            return unknown_model(model)
        if key_refused(status, payload):
            return self.refusal(status, payload)
        return status, response_headers, payload

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


def default_listen(pass_through: bool) -> str:
    """The pod's gateway listens on every address of the pod; the host's front on loopback only."""
    return "127.0.0.1:8090" if pass_through else "0.0.0.0:8090"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    parser.add_argument(
        "--listen",
        default=env("ALM_GATEWAY_LISTEN"),
        help="HOST:PORT (default 0.0.0.0:8090; 127.0.0.1:8090 with --pass-through)",
    )
    parser.add_argument("--token-file", type=Path, default=Path(env("ALM_GATEWAY_TOKEN_FILE", "/etc/alm/token/token")))
    parser.add_argument(
        "--pass-through",
        action="store_true",
        default=env("ALM_GATEWAY_PASS_THROUGH", "") == "1",
        help="no client token file: the client's Authorization goes to TorchServe unchanged (host, Compose)",
    )
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
    token_file = None if args.pass_through else args.token_file
    if token_file is not None:
        try:
            parse_tokens(token_file.read_text())
        except (OSError, ValueError) as exc:
            print(f"error: {token_file}: {exc}", file=sys.stderr)
            return 2
    listen = args.listen or default_listen(args.pass_through)
    gateway = Gateway(token_file, args.run_dir / "key_file.json", args.inference, args.management, args.timeout)
    server = make_server(parse_listen(listen), gateway)
    log.info(
        "listening on %s:%d, forwarding the inference API to %s (%s)",
        *server.server_address[:2],
        args.inference,
        "pass-through: the client's own key" if args.pass_through else "client tokens from " + str(token_file),
    )
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
