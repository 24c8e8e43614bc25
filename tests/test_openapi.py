"""docs/openapi.yaml against the live server (conftest.py's session TorchServe), by schemathesis.

Schemathesis generates requests from the document (multipart ``data``/``file``, raw
``text/csv`` and ``application/octet-stream`` bodies, JSON ForecastRequests, the option headers;
schema-valid and schema-violating ones)
and checks every answer: no 5xx, a status the document lists, the content type and the body
schema it declares. Requests go to the session's ``tiny`` model with the inference token;
``model``/``version`` path values are kept real (random names would only ever reach
TorchServe's 404). Bounded: a fixed number of examples per operation and mode, derandomised.
"""

from __future__ import annotations

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alm_forecaster.testing.synthetic import TINY, embeddings_csv
from alm_ops.launcher import TorchServe
from tests.helpers import OPENAPI, max_request_size, openapi_schema, validate

MODEL, VERSION = "tiny", "1.0"
EXAMPLES = 60  # per operation and generation mode
#: Checks by schemathesis; "no 5xx" is checked below, with one known TorchServe exception.
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


def torchserve_multipart_decoder_error(response: requests.Response) -> bool:
    """TorchServe 0.12's frontend answers a multipart body it cannot decode (e.g. a part named
    ``""``) with 500 ErrorDataDecoderException before any worker sees it; it cannot be fixed
    here (TorchServe is archived), test_multipart_part_without_a_name pins it down."""
    content_type = response.headers.get("content-type") or ""
    if isinstance(content_type, list):  # schemathesis' Response: every header is a list
        content_type = content_type[0] if content_type else ""
    if response.status_code != 500 or not content_type.startswith("application/json"):
        return False
    return response.json().get("type") == "ErrorDataDecoderException"


SCHEMA = openapi_schema()
OPERATIONS = {
    "/predictions/{model}": {"model": MODEL},
    "/predictions/{model}/{version}": {"model": MODEL, "version": VERSION},
}
MEDIA_TYPES = ["multipart/form-data", "application/json", "text/csv", "application/octet-stream"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize("path", list(OPERATIONS))
def test_server_conforms_to_the_document(torchserve: TorchServe, path, mode):
    strategy = SCHEMA[path]["POST"].as_strategy(mode, path_parameters=OPERATIONS[path])
    seen: list[tuple[str, int]] = []

    @given(strategy)
    @settings(
        max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        # The real token, whatever the generator put in (negative cases mangle the auth header too).
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers.update(torchserve.auth())
        response = case.call_and_validate(base_url=torchserve.inference_url, checks=CHECKS, timeout=60)
        seen.append((case.media_type, response.status_code))
        assert "InvalidKeyException" not in response.text, "the inference token was not sent"
        if torchserve_multipart_decoder_error(response):
            assert case.media_type == "multipart/form-data", (response.text, case.media_type)
            return
        assert response.status_code < 500, (response.status_code, response.text[:500], case.as_curl_command())

    check()
    print(f"\n{path} {mode.value}: {len(seen)} requests, (media type, status): {sorted(set(seen))}")
    assert len({media_type for media_type, _ in seen}) == len(MEDIA_TYPES), seen


@pytest.mark.parametrize(
    ("label", "kwargs", "status"),
    [
        ("forecast", {"files": {"data": ("p.csv", embeddings_csv(input_size=TINY.input_size))}}, 200),
        ("not csv", {"data": b"\x00\x01", "headers": {"Content-Type": "application/octet-stream"}}, 400),
        ("contract", {"data": b"a,b\n1,2\n", "headers": {"Content-Type": "text/csv"}}, 422),
        ("too large", {"headers": {"Content-Type": "text/csv"}}, 413),  # max_request_size + 1 bytes
    ],
)
def test_every_status_class_matches_the_document(torchserve: TorchServe, label, kwargs, status):
    if status == 413:
        kwargs = {**kwargs, "data": b"0" * (max_request_size(torchserve) + 1)}
    response = torchserve.predict(MODEL, **kwargs)
    assert response.status_code == status, (label, response.status_code, response.text[:300])
    validate("/predictions/{model}", response)


def test_torchserve_errors_match_the_document(torchserve: TorchServe):
    csv = embeddings_csv(input_size=TINY.input_size)
    unknown = requests.post(
        torchserve.inference_url + "/predictions/no_such_model", headers=torchserve.auth(), data=csv, timeout=30
    )
    assert unknown.status_code == 404
    validate("/predictions/{model}", unknown)
    no_version = torchserve.predict(MODEL, "9.9", data=csv, headers={"Content-Type": "text/csv"})
    assert no_version.status_code == 404
    validate("/predictions/{model}/{version}", no_version)
    no_token = requests.post(torchserve.inference_url + f"/predictions/{MODEL}", data=csv, timeout=30)
    assert no_token.status_code == 400
    validate("/predictions/{model}", no_token)


def test_document_lists_what_the_server_really_returns():
    document = yaml.safe_load(OPENAPI.read_text())
    for path in ("/predictions/{model}", "/predictions/{model}/{version}"):
        statuses = set(document["paths"][path]["post"]["responses"])
        assert {"200", "400", "404", "413", "422", "500", "503", "507"} <= statuses, statuses


def test_multipart_part_without_a_name(torchserve: TorchServe):
    """Known TorchServe 0.12 behaviour (not this service's code): a multipart part named "" is
    a 500 ErrorDataDecoderException from the frontend. The worker never sees it; a good request
    right after is served by the same worker."""
    pids = [w["pid"] for w in torchserve.workers(MODEL)]
    body = (
        b'--b\r\nContent-Disposition: form-data; name=""\r\n\r\nx\r\n'
        b'--b\r\nContent-Disposition: form-data; name="data"\r\n\r\n'
        + embeddings_csv(input_size=TINY.input_size)
        + b"\r\n--b--\r\n"
    )
    for content_type, data in (
        ("multipart/form-data; boundary=b", body),
        ("application/x-www-form-urlencoded", b"=x"),  # the same decoder, the same answer
    ):
        response = torchserve.predict(MODEL, data=data, headers={"Content-Type": content_type})
        assert torchserve_multipart_decoder_error(response), (response.status_code, response.text)
        assert "empty name" in response.json()["message"]
        validate("/predictions/{model}", response)  # a documented 500 with TorchServe's error body
    good = torchserve.predict(MODEL, files={"data": ("p.csv", embeddings_csv(input_size=TINY.input_size))})
    assert good.status_code == 200 and [w["pid"] for w in torchserve.workers(MODEL)] == pids
