"""The HTTP client of a running TorchServe: its inference, management and metrics APIs.

One `TorchServeApi` holds the three base URLs and a `Token` per kind of key (``inference`` for
the inference API, ``management`` for the management API; the metrics API takes none). A
request the server refuses for its token (TorchServe 0.12: HTTP 400 InvalidKeyException) is
sent once more when the token's key file holds a newer key.

Two levels: `predict` and `manage` return the `requests.Response` as it came (tests and
benchmarks look at statuses and bodies); `call` and the operations on it (describe, list,
register, scale, set-default, unregister) return the JSON body and raise `ApiError` with the
server's own message otherwise (what the command-line tools print).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import requests

from alm_ops.keys import Token

#: Seconds between two looks at a model that is not ready yet.
POLL_S = 0.25


class UsageError(Exception):
    """Bad arguments or an unusable token source (a command's exit status 2)."""


class ApiError(Exception):
    """A call that failed: the server's message, or why there was no answer."""

    def __init__(self, message: str, status: int | None = None, refused: bool = False) -> None:
        super().__init__(message)
        self.status, self.refused = status, refused

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.args[0]}" if self.status is not None else self.args[0]


def token_refused(response: requests.Response) -> bool:
    """TorchServe's answer to a missing, wrong or expired key: 400 InvalidKeyException."""
    return response.status_code == 400 and (
        "InvalidKeyException" in response.text or "Token Authorization failed" in response.text
    )


#: TorchServe's answer to the requests of a batch whose worker process stopped under them (killed,
#: crashed, or stopped by a scale-down): 500, or 507 when the process was killed by SIGKILL.
WORKER_DIED = "Worker died."


def worker_died(response: requests.Response) -> bool:
    """TorchServe's own ``{"code": 500|507, "type": ..., "message": "Worker died."}``: the request
    reached a worker that stopped before answering. A forecast is a pure function of its input,
    so resending it is safe. Never the handler's own 500/507 (``{"error": ..., "code": ...}``),
    which is this request's failure and would fail again."""
    if response.status_code not in (500, 507):
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error" not in body and body.get("message") == WORKER_DIED


def server_message(response: requests.Response) -> str:
    """The server's own words: the handler's ``error``, TorchServe's ``message``, or the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return body[key]
    text = response.text.strip()
    return text[:500] if text else response.reason or "no message"


def split_model(value: str) -> tuple[str, str | None]:
    """``MODEL`` or ``MODEL/VERSION`` -> (model, version or None)."""
    name, _, version = value.partition("/")
    if not name:
        raise UsageError(f"expected MODEL or MODEL/VERSION, got {value!r}")
    return name, version or None


def model_path(model: str, version: str | None = None) -> str:
    """``/models/MODEL[/VERSION]`` of the management API, each part quoted."""
    return f"/models/{quote(model, safe='')}" + (f"/{quote(version, safe='')}" if version else "")


def custom_metadata(description: dict) -> dict:
    """The handler's own description in a ``customized=true`` answer (TorchServe may send it as
    a JSON string); {} when there is none."""
    meta = description.get("customizedMetadata") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return {}
    return meta if isinstance(meta, dict) else {}


class TorchServeApi:
    """The inference, management and metrics APIs of one TorchServe, with a token per API.

    ``keep_alive``: one HTTP connection per thread, reused (many requests to the same server);
    otherwise a new connection per request.
    """

    def __init__(
        self,
        inference_url: str = "",
        management_url: str = "",
        metrics_url: str = "",
        tokens: dict[str, Token] | None = None,
        timeout: float = 60.0,
        keep_alive: bool = False,
    ) -> None:
        self.inference_url, self.management_url = inference_url.rstrip("/"), management_url.rstrip("/")
        self.metrics_url = metrics_url.rstrip("/")
        self.tokens: dict[str, Token] = tokens if tokens is not None else {}
        self.timeout, self.keep_alive = timeout, keep_alive
        self._local = threading.local()

    # -- raw requests ---------------------------------------------------------------------------

    def auth(self, kind: str = "inference") -> dict[str, str]:
        """``Authorization`` header with the ``inference``, ``management`` or ``API`` key."""
        token = self.tokens.get(kind)
        return token.headers() if token is not None else {}

    def send(self, method: str, url: str, kind: str, **kwargs) -> requests.Response:
        """One request with the ``kind`` token (``requests`` kwargs; their headers win); sent once
        more when the server refused a key that its key file has since replaced."""
        token = self.tokens.get(kind) or Token(None)
        extra = kwargs.pop("headers", None) or {}
        kwargs.setdefault("timeout", self.timeout)
        value, refreshed = token.value, False
        while True:
            response = self._http().request(method, url, headers={**token.headers(value), **extra}, **kwargs)
            if refreshed or not token_refused(response):
                return response
            refreshed, new = True, token.refresh(value)
            if new is None:
                return response
            value = new

    def _http(self):
        if not self.keep_alive:
            return requests
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def predict(self, model: str, version: str | None = None, headers: dict | None = None, **kwargs):
        """POST /predictions/<model>[/<version>] with the inference token (``requests`` kwargs)."""
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        return self.send("POST", self.inference_url + path, "inference", headers=headers, **kwargs)

    def manage(self, method: str, path: str, **kwargs) -> requests.Response:
        """A management API call with the management token, its response as it came."""
        return self.send(method, self.management_url + path, "management", **kwargs)

    def metrics(self) -> str:
        """The Prometheus text of the metrics API (no token)."""
        return requests.get(self.metrics_url + "/metrics", timeout=30).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus metric's samples whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
            if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
                total += float(match.group(2))
        return total

    # -- management calls that answer JSON or raise ApiError ------------------------------------

    def call(self, method: str, path: str, ok: tuple[int, ...] = (200,), **params) -> object:
        """One management call; its JSON on an ``ok`` status, else `ApiError` with the server's message."""
        params = {k: v for k, v in params.items() if v is not None}
        try:
            response = self.manage(method, path, params=params)
        except requests.RequestException as exc:
            raise ApiError(f"no answer from {self.management_url} ({type(exc).__name__}: {exc})") from None
        if response.status_code not in ok:
            raise ApiError(server_message(response), response.status_code, token_refused(response))
        try:
            return response.json()
        except ValueError:
            return response.text

    def model_names(self) -> list[str]:
        names, page = [], None
        while True:
            body = self.call("GET", "/models", limit=100, next_page_token=page)
            names += [m["modelName"] for m in body.get("models", [])]
            page = body.get("nextPageToken")
            if not page:
                return names

    def describe(self, model: str, version: str | None = None, customized: bool = False) -> dict:
        """``GET /models/MODEL[/VERSION]``: the (default) version's description."""
        return self.call("GET", model_path(model, version), customized="true" if customized else None)[0]

    def workers(self, model: str, version: str | None = None) -> list[dict]:
        return self.describe(model, version)["workers"]

    def versions(self, model: str) -> list[dict]:
        return self.call("GET", model_path(model, "all"))

    def register(
        self, url: str, initial_workers: int | None = None, model_name: str | None = None, synchronous: bool = False
    ) -> object:
        """``POST /models?url=...``: an archive of the model store (``name.mar``) or a ``file://``
        URL inside it. Asynchronous by default: TorchServe answers 202 at once."""
        return self.call(
            "POST",
            "/models",
            ok=(200,) if synchronous else (202,),
            url=url,
            synchronous=str(synchronous).lower(),
            initial_workers=initial_workers,
            model_name=model_name,
        )

    def scale(
        self,
        model: str,
        version: str | None = None,
        min_worker: int | None = None,
        max_worker: int | None = None,
        synchronous: bool = True,
        timeout: int | None = None,
    ) -> object:
        """``PUT /models/MODEL[/VERSION]?min_worker=...``: without ``max_worker`` TorchServe sets it
        to ``min_worker`` (exactly that many workers)."""
        return self.call(
            "PUT",
            model_path(model, version),
            ok=(200, 202),
            min_worker=min_worker,
            max_worker=max_worker,
            synchronous=str(synchronous).lower(),
            timeout=timeout,
        )

    def set_default(self, model: str, version: str) -> object:
        """Unversioned requests of ``model`` go to ``version`` from now on."""
        return self.call("PUT", model_path(model, version) + "/set-default")

    def unregister(self, model: str, version: str | None = None) -> object:
        """``DELETE /models/MODEL[/VERSION]``; without a version, the default one (refused while
        other versions exist)."""
        return self.call("DELETE", model_path(model, version))

    def wait(self, ready: Callable[[], tuple[object, str]], what: str, timeout: float, interval: float = POLL_S):
        """Poll until ``ready()`` returns ``(found, last_seen)`` with ``found`` not None; `ApiError`
        from ``ready`` means not yet, and one on timeout."""
        deadline, last = time.monotonic() + timeout, "no answer yet"
        while True:
            try:
                found, last = ready()
                if found is not None:
                    return found
            except ApiError as exc:
                last = str(exc)
            if time.monotonic() > deadline:
                raise ApiError(
                    f"{what}: not ready after {timeout:g} s (last seen: {last}); the server's model_log.log "
                    "says why a worker does not start"
                )
            time.sleep(interval)


def worker_summary(description: dict) -> str:
    """``2/2 READY``, or ``1/2 READY (STARTING)``."""
    statuses = [w.get("status", "?") for w in description.get("workers", [])]
    others = sorted(set(statuses) - {"READY"})
    return f"{statuses.count('READY')}/{len(statuses)} READY" + (f" ({', '.join(others)})" if others else "")


def all_ready(description: dict, low: int, high: int | None = None) -> bool:
    """Every worker READY and their count within [low, high]."""
    workers = description.get("workers", [])
    count = len(workers)
    return all(w.get("status") == "READY" for w in workers) and low <= count <= (count if high is None else high)
