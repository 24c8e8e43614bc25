"""Hostile JSON against the real server: every JSON path, fuzzed with hypothesis.

Documents start valid (a ForecastRequest of price and level series, with options, or the same
series as a book with scenario options) and are then
mutated field by field: a field replaced by any JSON value (null, booleans, integers far beyond
float64, floats such as NaN and 1e308, unicode text, arrays and objects), a field removed,
names duplicated, arrays made huge, nesting made deep, the encoded bytes truncated or spliced
with garbage. Each goes to the default model on the session TorchServe, by TorchServe's route
and by KServe's route on the host front (scripts/serve.sh's). For every answer:

* never a 5xx;
* a 4xx is KServe's ErrorResponse (status = its code) that names the field in ``param``, or says
  why the whole body is unusable (not JSON, not an object, nested too deep: ``param`` empty);
* a 200 is a valid ForecastResponse whose failed outputs each name their field;

and afterwards a good request is answered by the same worker processes. Bounded: a fixed
number of derandomised examples per route (about 40 s on two cores).
"""

from __future__ import annotations

import json
import math

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alm_forecaster import json_limits
from alm_forecaster.testing.synthetic import price_series
from alm_ops.gateway import start_front, stop_front
from alm_ops.launcher import TorchServe, free_ports
from tests.helpers import kserve_timeseries

MODEL = "alm_quantiles"
TYPES, _ = kserve_timeseries()
EXAMPLES = {"predictions": 150, "kserve-route": 50}
#: Reasons whose error is about the whole body, so that no field can be named.
WHOLE_BODY = {"bad_json", "json_too_deep"}
SEEN: dict[str, int] = {}


def base_document() -> dict:
    days, closes = price_series(280, seed=9)
    rate = [3.0 + 0.01 * math.sin(k / 7.0) + 0.002 * k for k in range(280)]
    start = str(days[0]) + "T00:00:00Z"
    return {
        "model": MODEL,
        "inputs": [
            {"type": "univariate_time_series", "name": "px", "series": [float(c) for c in closes], "frequency": "D",
             "start_timestamp": start},
            {"type": "univariate_time_series", "name": "rate", "series": rate, "frequency": "D",
             "start_timestamp": start, "kind": "level"},
        ],
        "options": {"horizon": 5, "quantiles": [0.05, 0.5, 0.95]},
    }  # fmt: skip


BASE = base_document()
#: A book of the same two series (issue 17): small, so that a mutation cannot make it slow.
BOOK = {
    **BASE,
    "options": {
        "horizon": 5,
        "quantiles": [0.01, 0.5, 0.99],
        "scenarios": {"paths": 200, "seed": 1, "exposures": {"px": 1e6, "rate": -8e4}, "risk_levels": [0.99]},
    },
}
#: Where a mutation may land: (path, how to reach it).
FIELDS = [
    (),
    ("model",),
    ("inputs",),
    ("inputs", 0),
    ("inputs", 1, "name"),
    ("inputs", 0, "type"),
    ("inputs", 0, "series"),
    ("inputs", 0, "series", 3),
    ("inputs", 1, "series", 279),
    ("inputs", 0, "frequency"),
    ("inputs", 1, "start_timestamp"),
    ("inputs", 1, "kind"),
    ("inputs", 0, "extra"),
    ("options",),
    ("options", "horizon"),
    ("options", "quantiles"),
    ("options", "quantiles", 0),
    ("options", "scenarios"),
    ("options", "scenarios", "paths"),
    ("options", "scenarios", "seed"),
    ("options", "scenarios", "exposures"),
    ("options", "scenarios", "exposures", "px"),
    ("options", "scenarios", "exposures", "nobody"),
    ("options", "scenarios", "risk_levels"),
    ("options", "scenarios", "return_paths"),
    ("metadata",),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([10**400, -(10**400), 2**63, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 5e-324, 0.05, 0.5]),
    st.text(max_size=40),
    st.sampled_from(["", "level", "LEVEL", "price", "D", "day", "W", "2024-13-45", "\x00", "\ud7ff" * 3, "x" * 300]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def deep(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


def put(document: dict, path: tuple, value: object) -> dict:
    """``document`` with the field at ``path`` set to ``value`` (parents made when missing)."""
    if not path:
        return value
    node = document
    for key in path[:-1]:
        if isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        elif isinstance(node, dict):
            node = node.setdefault(key, {})
        else:
            return document
    last = path[-1]
    if isinstance(node, list) and isinstance(last, int) and last < len(node):
        node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    return document


@st.composite
def hostile(draw) -> bytes:
    """One hostile body: a valid document (a forecast or a book) with one to three mutations, or
    its bytes damaged."""
    document = json.loads(json.dumps(draw(st.sampled_from([BASE, BOOK]))))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(FIELDS))
        kind = draw(st.sampled_from(["value", "value", "remove", "deep", "huge", "duplicate"]))
        if kind == "value":
            document = put(document, path, draw(values))
        elif kind == "remove" and isinstance(document, dict) and path and path[0] in document and len(path) == 1:
            document.pop(path[0])
        elif kind == "deep":
            document = put(document, path, deep(draw(st.sampled_from([json_limits.MAX_DEPTH + 1, 40, 900]))))
        elif kind == "huge":
            size = draw(st.sampled_from([json_limits.MAX_VALUES + 1, 1001, 5000]))
            document = put(
                document, path, [1.0] * size if "series" in path else [{"name": str(k)} for k in range(size)]
            )
        elif isinstance(document, dict) and isinstance(document.get("inputs"), list) and len(document["inputs"]) > 1:
            if isinstance(document["inputs"][0], dict) and isinstance(document["inputs"][1], dict):
                document["inputs"][1]["name"] = document["inputs"][0].get("name")
    body = json.dumps(document, allow_nan=True).encode()
    damage = draw(st.sampled_from([None, None, None, "truncate", "splice"]))
    if damage == "truncate":
        body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    elif damage == "splice":
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.binary(min_size=1, max_size=8)) + body[at:]
    return body


def judge(response: requests.Response, route: str) -> None:
    """The promises of the module docstring, for one answer."""
    assert response.status_code < 500, (route, response.status_code, response.text[:300])
    body = response.json()
    SEEN[route] = SEEN.get(route, 0) + 1
    if response.status_code == 200:
        TYPES.ForecastResponse.model_validate(body)
        for output in body["outputs"]:
            if output["status"] == "error":
                assert output["error"]["param"], output
        return
    error = TYPES.ErrorResponse.model_validate(body).error
    assert int(error.code) == response.status_code and error.message, body
    assert error.param or error.type in WHOLE_BODY or route == "kserve-route", body


@pytest.fixture(scope="module")
def front(served: TorchServe) -> str:
    port = free_ports(1)[0]
    start_front(served.workdir, f"127.0.0.1:{port}")
    try:
        yield f"http://127.0.0.1:{port}/v1/timeseries/forecast"
    finally:
        stop_front(served.workdir)


def good_answer(served: TorchServe) -> None:
    answer = served.predict(MODEL, data=json.dumps(BASE), headers={"Content-Type": "application/json"})
    assert answer.status_code == 200 and answer.json()["status"] == "completed", answer.text


def test_the_base_document_is_served(served):
    good_answer(served)


def test_fuzzed_documents_through_torchserves_route(served):
    pids = {w["pid"] for w in served.workers(MODEL)}

    @settings(max_examples=EXAMPLES["predictions"], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=hostile())
    def check(body: bytes) -> None:
        judge(served.predict(MODEL, data=body, headers={"Content-Type": "application/json"}), "predictions")

    check()
    good_answer(served)
    assert {w["pid"] for w in served.workers(MODEL)} == pids
    print(f"\nfuzzed documents through /predictions/{MODEL}: {SEEN.get('predictions', 0)}")


def test_fuzzed_documents_through_kserves_route(served, front):
    """The front answers some errors itself (a body that is not JSON or names no model): those
    are ErrorResponses too, and everything else is the server's answer passed on."""
    pids = {w["pid"] for w in served.workers(MODEL)}
    auth = served.auth()

    @settings(max_examples=EXAMPLES["kserve-route"], deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=hostile())
    def check(body: bytes) -> None:
        response = requests.post(front, data=body, headers={**auth, "Content-Type": "application/json"}, timeout=60)
        if response.status_code == 404:  # a mutated model name: the front's own ErrorResponse
            TYPES.ErrorResponse.model_validate(response.json())
            return
        judge(response, "kserve-route")

    check()
    good_answer(served)
    assert {w["pid"] for w in served.workers(MODEL)} == pids
    print(f"\nfuzzed documents through /v1/timeseries/forecast: {SEEN.get('kserve-route', 0)}")
