"""Forecast distributions through the real TorchServe: every input kind and both option carriers.

The shipped default model (models/alm_quantiles.pt) is archived and registered on the session
server. Each answer must equal the in-process `Forecaster` for the same request: single-price
CSVs (multipart and raw text/csv), OHLCV read through its close, options as headers and as
multipart fields, a KServe time-series JSON request with one bad series among good ones (which
fails alone, in one batched forward), and the refusals: embeddings, bad options, a malformed
document, each a 4xx naming the problem, with the worker still serving.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from alm_forecaster.forecaster import Forecaster, Request
from alm_forecaster.kserve import request_document
from alm_forecaster.testing.synthetic import embeddings_csv, price_csv, price_series
from alm_ops.api import custom_metadata
from tests.helpers import ROOT

MODEL = "alm_quantiles"
CHECKPOINT = ROOT / "models" / "alm_quantiles.pt"


def expected(offline: Forecaster, body, **options) -> dict:
    answer = offline.predict([Request(body, **options)])[0]
    assert answer.status == 200, answer.body
    return answer.body


def assert_same(got: dict, want: dict) -> None:
    assert got["prediction_horizon"] == want["prediction_horizon"] and got["current_price"] == want["current_price"]
    assert got["predicted_prices"] == pytest.approx(want["predicted_prices"], rel=1e-6)
    assert list(got.get("quantiles", {})) == list(want.get("quantiles", {}))
    for level, values in want.get("quantiles", {}).items():
        assert got["quantiles"][level] == pytest.approx(values, rel=1e-6)


def test_single_price_csv_multipart_and_raw(served, offline):
    body = price_csv(300, seed=40)
    want = expected(offline, body)
    multipart = served.predict(MODEL, files={"data": ("prices.csv", body)})
    raw = served.predict(MODEL, data=body, headers={"Content-Type": "text/csv"})
    for answer in (multipart, raw):
        assert answer.status_code == 200, answer.text
        assert_same(answer.json(), want)


def test_ohlcv_through_its_close(served, offline):
    days, closes = price_series(290, seed=41)
    rows = [f"{d},{c:.6f},{c * 1.01:.6f},{c * 0.99:.6f},{c:.6f},100" for d, c in zip(days, closes, strict=True)]
    body = ("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n").encode()
    answer = served.predict(MODEL, files={"file": ("ohlcv.csv", body)})
    assert answer.status_code == 200, answer.text
    assert_same(answer.json(), expected(offline, body))


def test_options_as_headers_and_as_multipart_fields(served, offline):
    body = price_csv(300, seed=42)
    want = expected(offline, body, horizon="2", quantiles="0.05,0.95")
    by_header = served.predict(
        MODEL,
        data=body,
        headers={"Content-Type": "text/csv", "X-Forecast-Horizon": "2", "X-Forecast-Quantiles": "0.05,0.95"},
    )
    by_field = served.predict(MODEL, files={"data": ("p.csv", body)}, data={"horizon": "2", "quantiles": "0.05,0.95"})
    for answer in (by_header, by_field):
        assert answer.status_code == 200, answer.text
        assert list(answer.json()["quantiles"]) == ["0.05", "0.95"]
        assert_same(answer.json(), want)


@pytest.mark.parametrize(
    ("headers", "status", "words"),
    [
        ({"X-Forecast-Horizon": "9"}, 422, ["'horizon'", "1 to 5"]),
        ({"X-Forecast-Quantiles": "0.3"}, 422, ["'quantiles'", "0.05, 0.25, 0.5, 0.75, 0.95"]),
    ],
)
def test_bad_options_are_refused_by_name(served, headers, status, words):
    answer = served.predict(MODEL, data=price_csv(300, seed=43), headers={"Content-Type": "text/csv", **headers})
    assert answer.status_code == status, answer.text
    for word in words:
        assert word in answer.json()["error"]


def test_embeddings_are_refused_and_the_worker_lives(served):
    pids = {w["pid"] for w in served.workers(MODEL)}
    answer = served.predict(MODEL, files={"data": ("e.csv", embeddings_csv(20, 19))})
    assert answer.status_code == 422 and "Date column" in answer.json()["error"]
    assert served.predict(MODEL, files={"data": ("p.csv", price_csv(300, 44))}).status_code == 200
    assert {w["pid"] for w in served.workers(MODEL)} == pids


def test_json_request_many_series_one_bad(served, offline):
    series = [(f"s{k}", *price_series(280 + k, seed=50 + k)) for k in range(4)]
    document = request_document(MODEL, series, horizon=5, quantiles=[0.05, 0.5, 0.95])
    document["inputs"][2]["series"][10] = "x"
    answer = served.predict(MODEL, data=json.dumps(document), headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "partial" and body["model"] == MODEL and body["id"].startswith("resp_")
    statuses = [o["status"] for o in body["outputs"]]
    assert statuses == ["completed", "completed", "error", "completed"]
    error = body["outputs"][2]["error"]
    assert error["param"] == "inputs[2].series[10]" and "'x' is not a number" in error["message"]
    want = expected(offline, json.dumps(document).encode(), content_type="application/json")
    for got, ref in zip(body["outputs"], want["outputs"], strict=True):
        if got["status"] == "completed":
            content, ref_content = got["content"][0], ref["content"][0]
            assert (
                content["name"] == ref_content["name"] and content["start_timestamp"] == ref_content["start_timestamp"]
            )
            assert content["mean_forecast"] == pytest.approx(ref_content["mean_forecast"], rel=1e-6)
            for level in ("0.05", "0.5", "0.95"):
                assert np.allclose(content["quantiles"][level], ref_content["quantiles"][level], rtol=1e-6)


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ('{"model": "m", "inputs": 3}', "inputs", ["'inputs'"]),
        ("{oops", "", ["not valid JSON"]),
        ("[1, 2]", "", ["must be a JSON object"]),
    ],
)
def test_a_bad_json_document_is_a_kserve_error_naming_the_field(served, body, param, words):
    answer = served.predict(MODEL, data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error == {"code": "400", "message": error["message"], "param": param, "type": "bad_json"}
    for word in words:
        assert word in error["message"]


def test_describe_says_what_the_model_takes(served):
    meta = custom_metadata(served.describe(MODEL, customized=True))
    assert meta["quantiles"] == [0.05, 0.25, 0.5, 0.75, 0.95] and meta["rows_needed"] == 274
    assert meta["accepts"] == ["prices", "ohlcv", "timeseries_json"]
