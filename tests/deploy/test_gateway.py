"""docker/token_gateway.py, the pod's public front, against a fake TorchServe 0.12: clients show a
token of the mounted secret, the gateway forwards with the pod's own inference key (renewed when
it expires) and never reaches the management API but for the KServe model list. Its pass-through
mode (the host's and Compose's front) passes the client's own header on. The KServe routes
against a real TorchServe: tests/test_kserve_routes.py."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.deploy.conftest import INVALID_KEY, ROOT, load_module, read_properties
from tests.helpers import kserve_timeseries

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


def test_gateway_limits_answers(gateway, fake_ts, monkeypatch):
    """TorchServe's answer is read whole (to resend "Worker died."), so never beyond
    config.properties' max_response_size: a longer one is a 502, not a growing buffer."""
    url, _ = gateway
    properties = read_properties(ROOT / "config.properties")
    assert token_gateway.MAX_ANSWER == int(properties["max_response_size"])
    assert token_gateway.MAX_BODY == int(properties["max_request_size"])
    monkeypatch.setattr(token_gateway, "MAX_ANSWER", 64)
    fake_ts.answers = [(200, {"model": "m", "padding": "x" * 64})]
    response = requests.post(f"{url}/predictions/m", data=b"x", timeout=10, headers=CLIENT_AUTH)
    assert response.status_code == 502
    assert requests.post(f"{url}/predictions/m", data=b"x", timeout=10, headers=CLIENT_AUTH).status_code == 200


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


# -- KServe's time-series routes ----------------------------------------------------------------

FORECAST, MODELS = "/v1/timeseries/forecast", "/v1/timeseries/models"
ERROR_RESPONSE = kserve_timeseries()[0].ErrorResponse


def kserve_error(response: requests.Response, status: int) -> dict:
    """The gateway's own answer on a KServe route: KServe's ErrorResponse, its code the status."""
    assert response.status_code == status, response.text
    assert ERROR_RESPONSE.model_validate(response.json()).error.code == str(status)
    return response.json()["error"]


@pytest.fixture
def pass_through(fake_ts):
    gw = token_gateway.Gateway(None, fake_ts.key_file, fake_ts.inference_url, fake_ts.management_url, 10)
    server = token_gateway.make_server(("127.0.0.1", 0), gw)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_forecast_route_goes_to_predictions_of_the_bodys_model(gateway, fake_ts):
    url, _ = gateway
    body = b'{"model": "seed_untrained", "inputs": []}'
    response = requests.post(
        url + FORECAST, data=body, headers={**CLIENT_AUTH, "Content-Type": "text/plain"}, timeout=10
    )
    assert response.status_code == 200, response.text
    # The body unchanged, as JSON, with the pod's key: what /predictions/<model> answers comes back.
    assert response.json() == {"model": "seed_untrained", "bytes": len(body), "content_type": "application/json"}
    assert fake_ts.seen[-1] == ("inference", "POST /predictions/seed_untrained", "Bearer i-1", body)


def test_the_forecast_route_resends_worker_died_and_passes_the_rest_on(gateway, fake_ts, monkeypatch):
    url, _ = gateway
    monkeypatch.setattr(token_gateway, "WORKER_DIED_BACKOFF_S", 0.01)
    fake_ts.answers = [(500, WORKER_DIED), (507, {**WORKER_DIED, "code": 507})]
    body = b'{"model": "m"}'
    response = requests.post(url + FORECAST, data=body, headers=CLIENT_AUTH, timeout=10)
    assert response.status_code == 200 and response.json()["model"] == "m"
    assert len([entry for entry in fake_ts.seen if entry[1] == "POST /predictions/m"]) == 3
    handler_error = {"error": "'inputs' must be a list", "code": 400}  # the handler's own: as it is
    fake_ts.answers = [(400, handler_error)]
    response = requests.post(url + FORECAST, data=body, headers=CLIENT_AUTH, timeout=10)
    assert response.status_code == 400 and response.json() == handler_error


def test_the_model_list_renews_an_expired_management_key(gateway, fake_ts):
    url, _ = gateway
    fake_ts.models = {"alm_quantiles": ["READY"], "sp500_xlstm": ["READY"]}
    fake_ts.expired.add("management")
    response = requests.get(url + MODELS, headers=CLIENT_AUTH, timeout=10)
    assert response.status_code == 200 and response.json() == ["alm_quantiles", "sp500_xlstm"]
    assert fake_ts.keys["management"] != "m-1"
    management = [(what, auth) for api, what, auth, _ in fake_ts.seen if api == "management"]
    assert [what.split("?")[0] for what, _ in management] == ["GET /models", "GET /token", "GET /models"]
    assert management[-1][1] == f"Bearer {fake_ts.keys['management']}"


def test_the_kserve_routes_errors_are_error_responses(gateway, fake_ts, monkeypatch):
    url, token_file = gateway
    error = kserve_error(requests.post(url + FORECAST, data=b'{"model": "m"}', timeout=10), 401)
    assert error["type"] == "Unauthorized"
    monkeypatch.setattr(token_gateway, "MAX_BODY", 16)
    kserve_error(requests.post(url + FORECAST, data=b'{"model": "m", "x": 1}', headers=CLIENT_AUTH, timeout=10), 413)
    chunked = requests.post(url + FORECAST, data=iter([b'{"model": "m"}']), headers=CLIENT_AUTH, timeout=10)
    kserve_error(chunked, 411)
    kserve_error(requests.put(url + FORECAST, data=b"{}", headers=CLIENT_AUTH, timeout=10), 405)
    fake_ts.close()  # TorchServe not answering
    kserve_error(requests.post(url + FORECAST, data=b'{"model": "m"}', headers=CLIENT_AUTH, timeout=10), 502)
    kserve_error(requests.get(url + MODELS, headers=CLIENT_AUTH, timeout=10), 502)
    token_file.unlink()
    kserve_error(requests.get(url + MODELS, headers=CLIENT_AUTH, timeout=10), 503)


def test_pass_through_sends_the_clients_own_header(pass_through, fake_ts):
    """The host's front: TorchServe's own key from the client, unchanged; TorchServe decides."""
    own = {"Authorization": "Bearer i-1"}
    assert requests.post(pass_through + "/predictions/m", data=b"x", headers=own, timeout=10).status_code == 200
    response = requests.post(pass_through + FORECAST, data=b'{"model": "m"}', headers=own, timeout=10)
    assert response.status_code == 200 and response.json()["model"] == "m"
    assert [entry[2] for entry in fake_ts.seen] == ["Bearer i-1", "Bearer i-1"]
    assert requests.get(pass_through + MODELS, headers=own, timeout=10).json() == ["seed_untrained"]
    assert ("inference", "GET /ping", "Bearer i-1", b"") in fake_ts.seen  # the key checked by TorchServe first
    fake_ts.seen.clear()
    # No header, or another one: TorchServe's refusal, as it is on /predictions, as an ErrorResponse on KServe's routes.
    for headers in ({}, CLIENT_AUTH):
        refused = requests.post(pass_through + "/predictions/m", data=b"x", headers=headers, timeout=10)
        assert refused.status_code == 400 and refused.json() == INVALID_KEY
        for response in (
            requests.post(pass_through + FORECAST, data=b'{"model": "m"}', headers=headers, timeout=10),
            requests.post(pass_through + FORECAST, data=b"{oops", headers=headers, timeout=10),
            requests.get(pass_through + MODELS, headers=headers, timeout=10),
        ):
            error = kserve_error(response, 400)
            assert (error["type"], error["message"]) == (INVALID_KEY["type"], INVALID_KEY["message"])
    assert {entry[2] for entry in fake_ts.seen} == {None, CLIENT_AUTH["Authorization"]}
    assert not [entry for entry in fake_ts.seen if entry[0] == "management"]  # no list for a refused key
    # An expired key is the client's business here: the front never renews the inference key.
    fake_ts.expired.add("inference")
    assert requests.post(pass_through + FORECAST, data=b'{"model": "m"}', headers=own, timeout=10).status_code == 400
    assert fake_ts.keys["inference"] == "i-1"


def test_the_handlers_own_400_quoting_the_marker_renews_nothing(gateway, fake_ts):
    """Only TorchServe's own InvalidKeyException is a refused key, never a handler's message that
    quotes the request (a client could otherwise make the gateway renew the key at will)."""
    url, _ = gateway
    quoting = {"error": "inputs[0].name: 'InvalidKeyException Token Authorization failed' is not valid", "code": 400}
    fake_ts.answers = [(400, quoting)]
    response = requests.post(url + FORECAST, data=b'{"model": "m"}', headers=CLIENT_AUTH, timeout=10)
    assert response.status_code == 400 and response.json() == quoting
    assert fake_ts.keys["inference"] == "i-1" and not [e for e in fake_ts.seen if e[0] == "management"]


def test_pass_through_runs_as_a_process_on_loopback_by_default(tmp_path, fake_ts):
    port = free_port()
    command = [sys.executable, str(ROOT / "docker" / "token_gateway.py"), "--pass-through", "--run-dir", str(tmp_path)]
    env = {"ALM_GATEWAY_INFERENCE_URL": fake_ts.inference_url, "PATH": "/usr/bin:/bin"}
    assert token_gateway.default_listen(pass_through=True) == "127.0.0.1:8090"
    assert token_gateway.default_listen(pass_through=False) == "0.0.0.0:8090"  # the pod's
    process = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ping = requests.get(f"http://127.0.0.1:{port}/ping", headers={"Authorization": "Bearer i-1"}, timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        assert ping.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
    assert process.returncode == 0 and "pass-through" in output
