"""A KServe time-series client parses every JSON answer of the live server with KServe's own models.

Every JSON request of the replay corpus (tests/replay_corpus.py: whole, partial and all-error
requests, malformed documents, bad options, level and mixed-kind inputs, the README's
portfolio), sent to the default model on the session TorchServe as a KServe client sends it:
a 200 must validate as KServe 0.21.0's ``ForecastResponse`` (every output, completed or not),
anything else as its ``ErrorResponse`` with the HTTP status equal to ``error.code``. A negative
control shows the models do refuse the shapes this service used to send.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import ROOT, kserve_timeseries
from tests.replay_corpus import replay_requests

MODEL = "alm_quantiles"
TYPES, _ = kserve_timeseries()
JSON_CASES = [
    case
    for case in replay_requests(ROOT / "examples")
    if case.content_type == "application/json" and case.model == MODEL
]


def conforms(status: int, body: dict) -> str:
    """Which KServe model the answer validates as; raises pydantic's ValidationError otherwise."""
    if status == 200:
        TYPES.ForecastResponse.model_validate(body)
        return "ForecastResponse"
    error = TYPES.ErrorResponse.model_validate(body)
    assert int(error.error.code) == status, (status, body)
    return "ErrorResponse"


def test_the_corpus_has_every_kind_of_json_answer():
    ids = {case.id for case in JSON_CASES}
    assert {"json/two-series", "json/partial", "json/all-error", "json/no-model", "json/horizon-9"} <= ids
    assert {"examples/portfolio", "levels/json-mixed-kinds", "json/not-json", "json/no-start-timestamp"} <= ids


@pytest.mark.parametrize("case", JSON_CASES, ids=[case.id for case in JSON_CASES])
def test_every_json_answer_is_valid_under_kserve_models(served, case):
    body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    answer = served.predict(MODEL, data=body, headers={"Content-Type": "application/json"})
    assert answer.headers["content-type"].startswith("application/json")
    kind = conforms(answer.status_code, answer.json())
    if kind == "ForecastResponse":
        outputs = answer.json()["outputs"]
        for output in outputs:
            TYPES.ForecastOutput.model_validate(output)
            if output["status"] == "error":
                TYPES.Error.model_validate(output["error"])


def test_the_models_refuse_what_this_service_used_to_send():
    """Negative control: a forecast without a start and a CSV-shaped error do not validate."""
    content = {"type": "univariate_time_series", "name": "a", "mean_forecast": [1.0], "frequency": "D"}
    with pytest.raises(Exception, match="start_timestamp"):
        TYPES.TimeSeriesForecast.model_validate({**content, "start_timestamp": None})
    with pytest.raises(Exception, match="error"):
        TYPES.ErrorResponse.model_validate({"error": "Not a ForecastRequest", "code": 400})
    with pytest.raises(Exception, match="frequency"):
        TYPES.TimeSeriesForecast.model_validate(
            {**content, "start_timestamp": "2024-01-02T00:00:00Z", "frequency": "DAY"}
        )
