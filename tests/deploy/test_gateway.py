"""docker/token_gateway.py, the pod's public front, against a fake TorchServe 0.12: clients show a
token of the mounted secret, the gateway forwards with the pod's own inference key (renewed when
it expires) and never reaches the management API."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.deploy.conftest import ROOT, load_module

token_gateway = load_module(ROOT / "docker" / "token_gateway.py")

CLIENT_AUTH = {"Authorization": "Bearer client-token-A"}
#: Management calls and escapes from /predictions: the gateway answers each 404 itself.
NOT_FORWARDED = (
    ("GET", "/models"),
    ("POST", "/models?url=x.mar"),
    ("GET", "/token?type=management"),
    ("GET", "/metrics"),
    ("GET", "/predictions/../models"),
)


@pytest.fixture
def gateway(fake_ts, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("client-token-A\n")
    gw = token_gateway.Gateway(token_file, fake_ts.key_file, fake_ts.inference_url, fake_ts.management_url, 10)
    server = token_gateway.make_server(("127.0.0.1", 0), gw)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", token_file
    server.shutdown()
    server.server_close()


def test_gateway_authenticates_clients_and_forwards_with_the_pod_key(gateway, fake_ts):
    url, _ = gateway
    csv = b"date,close\n2024-01-01,1.0\n"
    assert requests.post(f"{url}/predictions/seed_untrained", data=csv, timeout=10).status_code == 401
    wrong = requests.post(
        f"{url}/predictions/seed_untrained", data=csv, timeout=10, headers={"Authorization": "Bearer i-1"}
    )  # the pod's own key is not a client token
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    ok = requests.post(
        f"{url}/predictions/seed_untrained",
        data=csv,
        timeout=10,
        headers={**CLIENT_AUTH, "Content-Type": "text/csv"},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"model": "seed_untrained", "bytes": len(csv), "content_type": "text/csv"}
    forwarded = [entry for entry in fake_ts.seen if entry[0] == "inference"]
    assert forwarded and forwarded[-1][2] == "Bearer i-1" and forwarded[-1][3] == csv
    assert all(api == "inference" for api, *_ in fake_ts.seen)


def test_gateway_never_exposes_the_management_api(gateway, fake_ts):
    url, _ = gateway
    for method, path in NOT_FORWARDED:
        response = requests.request(method, url + path, headers=CLIENT_AUTH, timeout=10)
        assert response.status_code == 404, (method, path, response.status_code)
    assert requests.get(url + "/ping", headers=CLIENT_AUTH, timeout=10).status_code == 200
    assert not [entry for entry in fake_ts.seen if entry[0] == "management"]


def test_gateway_renews_an_expired_inference_key(gateway, fake_ts):
    url, _ = gateway
    fake_ts.expired.add("inference")
    response = requests.post(f"{url}/predictions/m", data=b"x", timeout=10, headers=CLIENT_AUTH)
    assert response.status_code == 200, response.text
    assert fake_ts.keys["inference"] != "i-1"
    assert fake_ts.seen[-1][2] == f"Bearer {fake_ts.keys['inference']}"


def test_gateway_follows_a_rotated_secret(gateway):
    url, token_file = gateway
    token_file.write_text("# rotation: old and new overlap\nclient-token-A\nclient-token-B\n")
    for token in ("client-token-A", "client-token-B"):
        assert requests.get(url + "/ping", headers={"Authorization": f"Bearer {token}"}, timeout=10).ok
    time.sleep(0.01)
    token_file.write_text("client-token-B-longer\n")  # size changes: re-read even within one mtime tick
    old = requests.get(url + "/ping", headers=CLIENT_AUTH, timeout=10)
    assert old.status_code == 401
    assert requests.get(url + "/ping", headers={"Authorization": "Bearer client-token-B-longer"}, timeout=10).ok


def test_gateway_limits_bodies(gateway, monkeypatch):
    url, _ = gateway
    monkeypatch.setattr(token_gateway, "MAX_BODY", 16)
    response = requests.post(f"{url}/predictions/m", data=b"x" * 17, timeout=10, headers=CLIENT_AUTH)
    assert response.status_code == 413
