"""Security by default: the shipped config and what the real server (conftest.py's session
TorchServe) lets through. Complements tests/test_server.py, which already checks a missing,
wrong or other-port token on POST /predictions and GET /models and the token on /ping, and
tests/test_archive.py (HTTP addresses on loopback, registration limited to the model store).
TorchServe 0.12 answers every refused token with HTTP 400 ``InvalidKeyException``.
"""

from __future__ import annotations

import json
import stat

import psutil
import pytest
import requests

from alm_forecaster.testing.synthetic import TINY, embeddings_csv
from alm_ops import serve_config
from alm_ops.launcher import TorchServe
from tests.helpers import ROOT

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def assert_refused(response: requests.Response) -> None:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    body = response.json()
    assert body["type"] == "InvalidKeyException" and "Token Auth" in body["message"], body


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- the shipped config.properties --------------------------------------------------------------


def test_shipped_config_is_secure_by_default():
    text = (ROOT / "config.properties").read_text()
    props = serve_config.read_properties()
    addresses = {k: v for k, v in props.items() if k.endswith("_address")}
    assert {"inference_address", "management_address", "metrics_address"} <= addresses.keys()
    assert {"grpc_inference_address", "grpc_management_address"} <= addresses.keys()  # gRPC cannot be turned off
    for key, value in addresses.items():
        host = value.removeprefix("http://").removeprefix("https://").rsplit(":", 1)[0] if "//" in value else value
        assert host == "127.0.0.1", f"{key}={value} is not loopback"
    # Token authorisation: on by TorchServe's default; the key must not appear at all.
    assert "disable_token_authorization" not in props
    assert "--disable-token-auth" not in text
    # Exactly what the README states: keys expire after 60 minutes.
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "Keys expire after 60 minutes (`token_expiration_min`)" in readme
    assert int(props["token_expiration_min"]) == 60
    # Registration: only .mar files directly in the model store.
    assert props["allowed_urls"] == r"file://@MODEL_STORE@/[^/]+\\.mar"
    # Exactly the README's cap: bodies over 10 MiB get 413 (tests/test_hostile_inputs.py sends them).
    assert "Above `max_request_size` (10 MiB) the answer is 413" in readme
    assert "request bodies are capped at 10 MiB (413)" in readme
    assert "| `max_request_size` | 10 MiB |" in readme
    assert int(props["max_request_size"]) == 10 * 2**20
    # The queue the README's table states (503 beyond it: tests/test_queue_full.py).
    assert "| `job_queue_size` | 200 |" in readme
    assert int(props["job_queue_size"]) == 200
    # Nothing that makes TorchServe install or run more than the archive's own code.
    assert props.get("install_py_dep_per_model", "false") == "false"
    assert props.get("enable_envvars_config", "false") == "false"


def test_running_server_listens_on_loopback_only(torchserve: TorchServe):
    listening = []
    for process in torchserve.processes():
        try:
            listening += [
                (process.name(), c.laddr) for c in process.net_connections(kind="inet") if c.status == "LISTEN"
            ]
        except psutil.NoSuchProcess:
            continue
    assert len(listening) >= 5, listening  # inference, management, metrics, gRPC inference and management
    assert all(addr.ip in LOOPBACK for _, addr in listening), listening
    effective = serve_config.read_properties(torchserve.workdir / "config.properties")
    assert "disable_token_authorization" not in effective


def test_key_file_is_readable_by_its_owner_only(torchserve: TorchServe):
    mode = (torchserve.workdir / "key_file.json").stat().st_mode
    assert stat.S_IMODE(mode) & 0o077 == 0, oct(mode)


# -- tokens ------------------------------------------------------------------------------------


def test_api_key_opens_neither_inference_nor_management(torchserve: TorchServe):
    """The never-expiring API key only mints keys (POST /token); it is no inference or management key."""
    api = bearer(torchserve.keys["API"])
    csv = embeddings_csv(input_size=TINY.input_size)
    assert_refused(requests.post(torchserve.inference_url + "/predictions/tiny", headers=api, data=csv, timeout=30))
    assert_refused(requests.get(torchserve.inference_url + "/ping", headers=api, timeout=30))
    assert_refused(requests.get(torchserve.management_url + "/models", headers=api, timeout=30))


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("POST", "/models", {"url": "tiny.mar", "synchronous": "true"}),  # registration: runs an archive's code
        ("DELETE", "/models/tiny", None),
        ("PUT", "/models/tiny", {"min_worker": 3, "synchronous": "true"}),
        ("PUT", "/models/tiny/1.0/set-default", None),
        ("GET", "/models/tiny", {"customized": "true"}),
        ("POST", "/token", {"type": "inference"}),
    ],
    ids=["register", "unregister", "scale", "set-default", "describe", "mint-token"],
)
@pytest.mark.parametrize("token", ["none", "inference-key"])
def test_management_calls_need_their_key(torchserve: TorchServe, method, path, params, token):
    headers = bearer(torchserve.keys["inference"]) if token == "inference-key" else {}
    before = torchserve.describe("tiny")
    response = requests.request(method, torchserve.management_url + path, params=params, headers=headers, timeout=30)
    assert_refused(response)
    after = torchserve.describe("tiny")
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]
    assert after["minWorkers"] == before["minWorkers"]


@pytest.mark.parametrize(
    "make_headers",
    [
        lambda key: {"Authorization": f"bearer {key}"},
        lambda key: {"Authorization": key},
        lambda key: {"Authorization": f"Bearer {key[:-1]}"},
        lambda key: {"Authorization": f"Bearer {key}x"},
        lambda key: {"Authorization": f"Basic {key}"},
        lambda key: {"Authorization": f"Bearer x, Bearer {key}"},
        lambda key: {"X-Api-Key": key},
    ],
    ids=["lowercase-scheme", "no-scheme", "prefix-of-key", "key-plus-suffix", "basic", "two-tokens", "other-header"],
)
def test_near_miss_tokens_are_refused(torchserve: TorchServe, make_headers):
    key = torchserve.keys["management"]
    assert_refused(requests.get(torchserve.management_url + "/models", headers=make_headers(key), timeout=30))
    response = requests.get(
        torchserve.management_url + "/models", params={"token": key}, headers=make_headers("nothing"), timeout=30
    )
    assert_refused(response)


def test_metrics_need_no_token_and_reveal_no_key(torchserve: TorchServe):
    response = requests.get(torchserve.metrics_url + "/metrics", timeout=30)
    assert response.status_code == 200 and "ts_inference_requests_total" in response.text
    assert not any(key in response.text for key in torchserve.keys.values())


def test_api_description_is_open_but_generic(torchserve: TorchServe):
    """``OPTIONS /`` answers TorchServe's own static API description without a token (0.12):
    nothing about the models and no key in it. Everything else needs a key."""
    for url in (torchserve.inference_url, torchserve.management_url):
        response = requests.options(url + "/", timeout=30)
        assert response.status_code == 200 and response.json()["info"]["title"] == "TorchServe APIs"
        assert "tiny" not in response.text and not any(k in response.text for k in torchserve.keys.values())


def test_tokens_rotate_and_old_keys_stop_working(torchserve: TorchServe):
    """POST /token?type=inference|management with the API key mints a new key into
    key_file.json; the old key is refused at once. The session's keys are updated in place."""
    key_file = torchserve.workdir / "key_file.json"
    old = dict(torchserve.keys)
    try:
        for kind, url, path in (
            ("inference", torchserve.inference_url, "/ping"),
            ("management", torchserve.management_url, "/models"),
        ):
            response = requests.post(
                torchserve.management_url + "/token", params={"type": kind}, headers=bearer(old["API"]), timeout=30
            )
            assert response.status_code == 200, response.text
            new = json.loads(key_file.read_text())[kind]["key"]
            assert new and new != old[kind]
            assert_refused(requests.get(url + path, headers=bearer(old[kind]), timeout=30))
            assert requests.get(url + path, headers=bearer(new), timeout=30).status_code == 200
    finally:
        torchserve.reload_keys()
    assert torchserve.keys["API"] == old["API"]  # the API key itself does not rotate
    ok = torchserve.predict(
        "tiny", data=embeddings_csv(input_size=TINY.input_size), headers={"Content-Type": "text/csv"}
    )
    assert ok.status_code == 200, ok.text
