"""docker/token_gateway.py, the pod's public front, against a fake TorchServe 0.12: clients show a
token of the mounted secret, the gateway forwards with the pod's own inference key (renewed when
it expires) and never reaches the management API."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
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
    token_file.write_text("client-token-B-longer\n")  # size changes: re-read even within one mtime tick
    old = requests.get(url + "/ping", headers=CLIENT_AUTH, timeout=10)
    assert old.status_code == 401
    assert requests.get(url + "/ping", headers={"Authorization": "Bearer client-token-B-longer"}, timeout=10).ok


def test_gateway_limits_bodies(gateway, monkeypatch):
    url, _ = gateway
    monkeypatch.setattr(token_gateway, "MAX_BODY", 16)
    response = requests.post(f"{url}/predictions/m", data=b"x" * 17, timeout=10, headers=CLIENT_AUTH)
    assert response.status_code == 413


# -- zero-downtime: resending "Worker died.", draining on SIGTERM -------------------------------

#: TorchServe 0.12's own answer when the worker holding a request stops under it.
WORKER_DIED = {"code": 500, "type": "InternalServerException", "message": "Worker died."}


def test_gateway_resends_what_torchserve_answered_worker_died(gateway, fake_ts, monkeypatch):
    url, _ = gateway
    monkeypatch.setattr(token_gateway, "WORKER_DIED_BACKOFF_S", 0.01)
    fake_ts.answers = [(500, WORKER_DIED), (507, {**WORKER_DIED, "code": 507})]
    response = requests.post(f"{url}/predictions/m", data=b"x", timeout=10, headers=CLIENT_AUTH)
    assert response.status_code == 200 and response.json()["model"] == "m", response.text
    assert len([entry for entry in fake_ts.seen if entry[1] == "POST /predictions/m"]) == 3

    # Bounded: after WORKER_DIED_RETRIES more attempts the client gets TorchServe's answer.
    fake_ts.seen.clear()
    fake_ts.answers = [(500, WORKER_DIED)] * 10
    response = requests.post(f"{url}/predictions/m", data=b"x", timeout=10, headers=CLIENT_AUTH)
    assert response.status_code == 500 and response.json() == WORKER_DIED
    assert len(fake_ts.seen) == token_gateway.WORKER_DIED_RETRIES + 1


def test_gateway_passes_the_handlers_own_500_on(gateway, fake_ts):
    url, _ = gateway
    failure = {"error": "Internal error while forecasting this request (ValueError)", "code": 500}
    fake_ts.answers = [(500, failure)]
    response = requests.post(f"{url}/predictions/m", data=b"x", timeout=10, headers=CLIENT_AUTH)
    assert response.status_code == 500 and response.json() == failure
    assert len(fake_ts.seen) == 1


def test_gateway_drains_on_sigterm(fake_ts, tmp_path):
    """The request in hand and one more on a kept-alive connection are answered (each answer
    closes its connection); a new connection is refused; then the gateway exits."""
    token_file = tmp_path / "token"
    token_file.write_text("client-token-A\n")
    port = free_port()
    command = [sys.executable, str(ROOT / "docker" / "token_gateway.py"), "--listen", f"127.0.0.1:{port}"]
    command += ["--token-file", str(token_file), "--run-dir", str(tmp_path), "--inference", fake_ts.inference_url]
    command += ["--management", fake_ts.management_url]
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        kept = requests.Session()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert kept.get(f"http://127.0.0.1:{port}/ping", headers=CLIENT_AUTH, timeout=5).ok
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        fake_ts.delay_s = 1.0
        answers = {}

        def forecast(name, session):
            answers[name] = session.post(
                f"http://127.0.0.1:{port}/predictions/m", data=b"x", headers=CLIENT_AUTH, timeout=10
            )

        in_hand = threading.Thread(target=forecast, args=("in hand", requests.Session()))
        in_hand.start()
        # SIGTERM once the request is in the gateway's hands (TorchServe has it: 1 s to answer).
        deadline = time.monotonic() + 20
        while not any(seen[1] == "POST /predictions/m" for seen in fake_ts.seen):
            assert time.monotonic() < deadline and in_hand.is_alive(), log.read_text()
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        # New connections are refused from the moment the gateway closes its socket (until then
        # it answers what was already queued on it).
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/ping", headers=CLIENT_AUTH, timeout=5)
            except requests.ConnectionError:
                break
            assert time.monotonic() < deadline, "the gateway still accepts connections after SIGTERM"
        forecast("kept alive", kept)  # on the connection opened before the SIGTERM
        in_hand.join(timeout=10)
        for name in ("in hand", "kept alive"):
            assert answers[name].status_code == 200, name
            assert answers[name].headers["Connection"] == "close", name
        assert process.wait(timeout=10) == 0
        assert "stopped after" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
