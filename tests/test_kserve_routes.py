"""KServe's time-series routes against the live session TorchServe, through both fronts.

KServe 0.21.0 serves its time-series forecast protocol at ``POST /v1/timeseries/forecast`` (the
model named in the body) and ``GET /v1/timeseries/models``; here docker/token_gateway.py does,
in front of TorchServe's ``/predictions/<model>``:

* ``pod``: the Kubernetes gateway (client tokens from a file, the pod's own TorchServe keys),
  started by alm_ops.gateway.start_gateway as the zero-downtime tests start it;
* ``host``: the pass-through front of scripts/serve.sh (the client's inference key passed to
  TorchServe unchanged), started and stopped by the very code scripts/serve.sh and
  scripts/stop.sh run (``alm_ops.launcher start-front`` / ``stop-front``).

A forecast through the route is the same answer as through ``/predictions/<model>`` (ids and
timestamps aside); the model list and every error the front makes itself are checked with
KServe's own pydantic models (kserve/protocol/rest/timeseries/types.py, error.py, installed by
requirements-dev-nodeps.txt); schemathesis checks both routes against docs/openapi.yaml. No
front is left running.
"""

from __future__ import annotations

import json
from http import HTTPStatus

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from pydantic import TypeAdapter, ValidationError
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alm_forecaster.testing.synthetic import price_series
from alm_ops import launcher
from alm_ops.gateway import front_pid, start_gateway
from alm_ops.launcher import TorchServe, free_ports
from tests.deploy.conftest import load_module
from tests.helpers import ROOT, kserve_timeseries, max_request_size, openapi_schema

MODEL = "alm_quantiles"
CHECKPOINT = ROOT / "models" / "alm_quantiles.pt"
FORECAST, MODELS = "/v1/timeseries/forecast", "/v1/timeseries/models"
KSERVE_TYPES, KSERVE_ERRORS = kserve_timeseries()
token_gateway = load_module(ROOT / "docker" / "token_gateway.py")


class Front:
    """A front's base URL, the headers of an accepted client and how it refuses a client."""

    def __init__(self, kind: str, url: str, auth: dict[str, str], refused_status: int) -> None:
        self.kind, self.url, self.auth, self.refused_status = kind, url, auth, refused_status

    def forecast(self, body: bytes, headers: dict[str, str] | None = None, **kwargs) -> requests.Response:
        headers = {"Content-Type": "application/json", **self.auth, **(headers or {})}
        return requests.post(self.url + FORECAST, data=body, headers=headers, timeout=60, **kwargs)

    def models(self, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(self.url + MODELS, headers=headers if headers is not None else self.auth, timeout=60)


@pytest.fixture(scope="module")
def pod_front(served: TorchServe, tmp_path_factory) -> Front:
    with start_gateway(served, tmp_path_factory.mktemp("pod-gateway")) as gateway:
        yield Front("pod", gateway.url, {"Authorization": f"Bearer {gateway.token}"}, 401)
    assert gateway.process.poll() is not None, "the pod's gateway is still running"


@pytest.fixture(scope="module")
def host_front(served: TorchServe) -> Front:
    """scripts/serve.sh's front (start-front), stopped as scripts/stop.sh stops it (stop-front)."""
    port = free_ports(1)[0]
    assert launcher.main(["start-front", str(served.workdir), "--listen", f"127.0.0.1:{port}"]) == 0
    pid = front_pid(served.workdir)
    assert pid is not None
    try:
        yield Front("host", f"http://127.0.0.1:{port}", served.auth(), 400)
    finally:
        assert launcher.main(["stop-front", str(served.workdir)]) == 0
    assert front_pid(served.workdir) is None and not (served.workdir / "gateway.pid").exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}{MODELS}", timeout=5)


@pytest.fixture(params=["pod", "host"])
def front(request) -> Front:
    return request.getfixturevalue(f"{request.param}_front")


def document(model: str = MODEL, bad: bool = True) -> dict:
    """A ForecastRequest of three series (the second one broken when ``bad``)."""
    inputs = []
    for k in range(3):
        days, closes = price_series(280 + k, seed=60 + k)
        series = [float(c) for c in closes]
        if bad and k == 1:
            series[5] = -1.0
        start = str(days[0])
        inputs.append({"type": "univariate_time_series", "name": f"s{k}", "series": series, "frequency": "D"})
        inputs[-1]["start_timestamp"] = start
    return {"model": model, "inputs": inputs, "options": {"horizon": 3, "quantiles": [0.05, 0.5, 0.95]}}


def masked(value):
    """A JSON answer with what differs between two requests (ids, creation time) masked."""
    if isinstance(value, dict):
        return {k: "<masked>" if k in ("id", "created_at") else masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def assert_kserve_error(response: requests.Response, status: int, error_type: str | None = None) -> dict:
    """A front's own answer: ``status``, a body valid under KServe's ErrorResponse, its code the
    status, built as KServe's own create_error_response builds one."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    parsed = KSERVE_TYPES.ErrorResponse.model_validate(body)
    assert parsed.error.code == str(status)
    if error_type is not None:
        assert parsed.error.type == error_type, body
    kserve_built = KSERVE_ERRORS.create_error_response(
        message=parsed.error.message,
        err_type=parsed.error.type,
        param=parsed.error.param,
        status_code=HTTPStatus(status),
    )
    assert body == kserve_built.model_dump()
    return body["error"]


# -- what a KServe client gets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "body"),
    [
        ("forecast, one bad series", json.dumps(document()).encode()),
        ("no options", json.dumps({k: v for k, v in document(bad=False).items() if k != "options"}).encode()),
        ("option out of range (422)", json.dumps({**document(bad=False), "options": {"horizon": 9}}).encode()),
        ("inputs not a list (400)", json.dumps({"model": MODEL, "inputs": 3}).encode()),
        ("the tiny embeddings model", json.dumps(document("tiny", bad=False)).encode()),
    ],
)
def test_the_route_answers_as_predictions_does(served, front, label, body):
    model = json.loads(body)["model"]
    direct = served.predict(model, data=body, headers={"Content-Type": "application/json"})
    routed = front.forecast(body)
    assert routed.status_code == direct.status_code, (label, routed.text[:300], direct.text[:300])
    assert routed.headers["Content-Type"] == direct.headers["Content-Type"]
    assert masked(routed.json()) == masked(direct.json()), label
    if label.startswith("forecast"):
        answer = routed.json()
        assert routed.status_code == 200 and answer["status"] == "partial" and answer["model"] == MODEL
        assert [o["status"] for o in answer["outputs"]] == ["completed", "error", "completed"]


def test_the_model_list_is_torchserves(served, front):
    response = front.models()
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/json"
    # KServe's route returns the list of names (TimeSeriesEndpoints.models): no model of its own.
    names = TypeAdapter(list[str]).validate_json(response.content)
    assert names == served.model_names() and {"tiny", MODEL} <= set(names)


NOT_A_FORECAST_REQUEST = [
    ("not JSON", b"{oops", "BadRequestError", ""),
    ("empty", b"", "BadRequestError", ""),
    ("not UTF-8", b"\xff\xfe{", "BadRequestError", ""),
    ("a JSON list", b'[{"model": "tiny"}]', "BadRequestError", ""),
    ("no model", json.dumps({"inputs": []}).encode(), "BadRequestError", "model"),
    ("model not a string", json.dumps({"model": 3, "inputs": []}).encode(), "BadRequestError", "model"),
    ("model empty", json.dumps({"model": "", "inputs": []}).encode(), "BadRequestError", "model"),
    ("deeply nested", b"[" * 100_000, "BadRequestError", ""),
]


@pytest.mark.parametrize(("label", "body", "error_type", "param"), NOT_A_FORECAST_REQUEST)
def test_a_body_that_names_no_model_is_a_400(front, label, body, error_type, param):
    error = assert_kserve_error(front.forecast(body), 400, error_type)
    assert error["param"] == param, label


@pytest.mark.parametrize("model", ["no_such_model", "../models", "tiny/1.0", "a b"])
def test_an_unknown_model_is_a_404(front, model):
    error = assert_kserve_error(front.forecast(json.dumps(document(model)).encode()), 404, "NotFound")
    assert error["message"] == f"Model with name {model} does not exist." and error["param"] == "model"


def test_torchserves_own_404_is_not_an_error_response(served):
    """Negative control: TorchServe's own answer for an unknown model, which the front replaces,
    is refused by KServe's model (the check above can fail)."""
    direct = served.predict("no_such_model", data=b"{}", headers={"Content-Type": "application/json"})
    assert direct.status_code == 404 and direct.json()["type"] == "ModelNotFoundException"
    with pytest.raises(ValidationError):
        KSERVE_TYPES.ErrorResponse.model_validate(direct.json())


@pytest.mark.parametrize(
    "auth", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}], ids=["missing", "wrong", "basic"]
)
def test_a_missing_or_wrong_token_is_refused_on_both_routes(served, front, auth):
    """The front's rule in each set-up: the pod's gateway answers 401 itself, the host's front
    lets TorchServe decide (its own 400 InvalidKeyException), in the protocol's shape; a known
    model, an unknown one and a bad body all get the same refusal, so nothing is learnt."""
    headers = {"Content-Type": "application/json", **auth}
    for body in (json.dumps(document()).encode(), json.dumps(document("no_such_model")).encode(), b"{oops"):
        response = requests.post(front.url + FORECAST, data=body, headers=headers, timeout=60)
        assert_kserve_error(response, front.refused_status)
    assert_kserve_error(front.models(auth), front.refused_status)
    if front.kind == "host":  # TorchServe's own refusal, in the protocol's shape
        assert_kserve_error(front.models(auth), 400, "InvalidKeyException")
    else:
        assert front.models(auth).headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_methods_and_bodies_over_the_cap(served, front):
    assert_kserve_error(requests.get(front.url + FORECAST, headers=front.auth, timeout=60), 405)
    assert_kserve_error(requests.post(front.url + MODELS, headers=front.auth, timeout=60), 405)
    # The front's cap is TorchServe's (config.properties max_request_size): a 413 before any JSON is read.
    assert token_gateway.MAX_BODY == max_request_size(served)
    too_large = front.forecast(b" " * (token_gateway.MAX_BODY + 1))
    assert_kserve_error(too_large, 413, "PayloadTooLarge")


def test_the_inference_api_stays_reachable_as_before(served, front):
    """The KServe routes are added to what the gateway forwarded: /ping and /predictions/..."""
    assert requests.get(front.url + "/ping", headers=front.auth, timeout=60).json() == {"status": "Healthy"}
    response = requests.get(front.url + "/models", headers=front.auth, timeout=60)  # never the management API
    assert response.status_code == 404 and "modelName" not in response.text


def test_a_second_front_refuses_to_start_and_stop_front_is_idempotent(host_front, served):
    port = free_ports(1)[0]
    assert launcher.main(["start-front", str(served.workdir), "--listen", f"127.0.0.1:{port}"]) == 1
    assert front_pid(served.workdir) is not None  # the running one is untouched
    assert host_front.models().status_code == 200


# -- docs/openapi.yaml, by schemathesis -----------------------------------------------------------

EXAMPLES = 40  # per route, front and generation mode
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize(
    ("path", "method", "mode"),
    [
        (FORECAST, "POST", GenerationMode.POSITIVE),
        (FORECAST, "POST", GenerationMode.NEGATIVE),
        (MODELS, "GET", GenerationMode.POSITIVE),
    ],
    ids=["forecast-positive", "forecast-negative", "models-positive"],
)
def test_the_routes_conform_to_the_document(front, path, method, mode):
    """Generated requests through the front: a status the document lists, its content type and
    schema, no 5xx. A generated forecast names the real model (a random name only ever gets the
    404, checked above); negative documents keep whatever they hold."""
    strategy = openapi_schema()[path][method].as_strategy(mode)
    seen: list[int] = []

    @given(strategy)
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers.update(front.auth)
        if mode == GenerationMode.POSITIVE and isinstance(case.body, dict):
            case.body["model"] = MODEL
        response = case.call_and_validate(base_url=front.url, checks=CHECKS, timeout=60)
        seen.append(response.status_code)
        assert response.status_code < 500, (response.status_code, response.text[:500], case.as_curl_command())

    check()
    print(f"\n{front.kind} {method} {path} {mode.value}: {len(seen)} requests, statuses {sorted(set(seen))}")
    assert seen
