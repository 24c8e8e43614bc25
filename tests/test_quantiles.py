"""Forecast distributions in-process: single-price input, quantiles, options, JSON requests.

The model is the shipped default, models/alm_quantiles.pt (trained on S&P 500 and WTI closes);
series are synthetic random walks with volatility clustering (`alm_forecaster.testing`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alm_forecaster import close_features
from alm_forecaster.checkpoint import build_checkpoint
from alm_forecaster.contract import Window
from alm_forecaster.errors import CheckpointError
from alm_forecaster.forecaster import Forecaster, Request
from alm_forecaster.heads import QuantileHead
from alm_forecaster.kinds import PRICE
from alm_forecaster.kserve import request_document
from alm_forecaster.testing.synthetic import TINY, embeddings_csv, price_csv, price_series, prices_csv, write_checkpoint
from tests.helpers import ROOT

CHECKPOINT = ROOT / "models" / "alm_quantiles.pt"
LEVELS = ["0.05", "0.25", "0.5", "0.75", "0.95"]


@pytest.fixture(scope="module")
def forecaster() -> Forecaster:
    return Forecaster.from_checkpoint(CHECKPOINT, "alm_quantiles", device="cpu")


def one(forecaster: Forecaster, body, **options):
    return forecaster.predict([Request(body, **options)])[0]


def test_describe_states_the_contract(forecaster):
    described = forecaster.describe()
    assert described["quantiles"] == [0.05, 0.25, 0.5, 0.75, 0.95]
    assert described["rows_needed"] == close_features.LOOKBACK + 20 == 274
    assert described["predicted_steps"] == 5
    assert described["accepts"] == ["prices", "ohlcv", "timeseries_json"]


def test_single_price_forecast_has_non_crossing_quantiles_around_the_median(forecaster):
    answer = one(forecaster, price_csv(300, seed=1))
    assert answer.status == 200, answer.body
    body = answer.body
    assert list(body["quantiles"]) == LEVELS and body["prediction_horizon"] == 5
    grid = np.array([body["quantiles"][level] for level in LEVELS])  # (levels, steps)
    assert (np.diff(grid, axis=0) > 0).all()
    assert body["predicted_prices"] == body["quantiles"]["0.5"]
    _, closes = price_series(300, seed=1)
    assert body["current_price"] == closes[-1]
    # The 90% band widens with the horizon (volatility grows like sqrt(h)).
    assert (np.diff(grid[-1] - grid[0]) > 0).all()


@pytest.mark.parametrize(
    "header", ["Date,Close", "date,close", "DATE,Price", "Date,Value", "observation_date,DCOILWTICO", "Date,Adj Close"]
)
def test_price_column_names(forecaster, header):
    reference = one(forecaster, price_csv(280, seed=2)).body
    answer = one(forecaster, price_csv(280, seed=2, header=header))
    assert answer.status == 200, answer.body
    assert answer.body["quantiles"] == reference["quantiles"]


def test_ohlcv_is_read_through_its_close(forecaster):
    days, closes = price_series(280, seed=3)
    rows = [
        f"{d},{c * 0.99!r},{c * 1.01!r},{c * 0.98!r},{c!r},1000" for d, c in zip(days, closes.tolist(), strict=True)
    ]
    ohlcv = ("Date,Open,High,Low,Close,Volume\n" + "\n".join(rows) + "\n").encode()
    assert one(forecaster, ohlcv).body == one(forecaster, price_csv(280, seed=3)).body


@pytest.mark.parametrize(
    ("mutate", "status", "reason", "words"),
    [
        (lambda lines: lines[:200], 422, "too_few_rows", ["Need at least 274, got 199", "254 days before"]),
        (
            lambda lines: [lines[0], *lines[1:100], lines[100].replace(",", ",-", 1), *lines[101:]],
            422,
            "non_positive_price",
            ["Row 100 (line 101)", "'Close'", "must be positive"],
        ),
        (
            lambda lines: [lines[0], *lines[1:100], lines[100].split(",")[0] + ",abc", *lines[101:]],
            422,
            "bad_value",
            ["Row 100 (line 101)", "'Close'", "'abc' is not a number"],
        ),
        (
            lambda lines: [lines[0], *lines[1:100], lines[100].split(",")[0] + ",nan", *lines[101:]],
            422,
            "bad_value",
            ["Row 100 (line 101)", "not a finite number"],
        ),
        (
            lambda lines: [lines[0], *lines[1:100], "2021/05/03," + lines[100].split(",")[1], *lines[101:]],
            422,
            "bad_dates",
            ["Row 100 (line 101)", "'Date'", "not an ISO date"],
        ),
        (lambda lines: [lines[0], *lines[:0:-1]], 422, "bad_dates", ["newest-first"]),
        (lambda lines: ["Close,Volume", *lines[1:]], 422, "missing_columns", ["No date column"]),
        (lambda lines: ["Date,A,B", *[line + ",1" for line in lines[1:]]], 422, "missing_columns", ["'A', 'B'"]),
    ],
)
def test_bad_price_files_are_named(forecaster, mutate, status, reason, words):
    lines = price_csv(300, seed=4).decode().splitlines()
    answer = one(forecaster, ("\n".join(mutate(lines)) + "\n").encode())
    assert (answer.status, answer.reason) == (status, reason), answer.body
    for word in words:
        assert word in answer.body["error"], answer.body["error"]


def test_embeddings_are_refused_by_a_price_model(forecaster):
    answer = one(forecaster, embeddings_csv(20, 19))
    assert (answer.status, answer.reason) == (422, "prices_required")
    assert "Date column" in answer.body["error"]


def test_features_are_causal():
    _, closes = price_series(400, seed=5)
    changed = closes.copy()
    changed[350:] *= 1.3
    before, sigma_before = close_features.features(np.log(closes))
    after, sigma_after = close_features.features(np.log(changed))
    np.testing.assert_array_equal(before[:350], after[:350])
    np.testing.assert_array_equal(sigma_before[:350], sigma_after[:350])
    assert not np.allclose(before[350:], after[350:])


@pytest.mark.parametrize(
    ("horizon", "quantiles", "keys", "steps"),
    [("2", None, LEVELS, 2), (None, "0.05,0.95", ["0.05", "0.95"], 5), ("1", "0.5", ["0.5"], 1)],
)
def test_options_cut_the_answer(forecaster, horizon, quantiles, keys, steps):
    full = one(forecaster, price_csv(300, seed=6)).body
    answer = one(forecaster, price_csv(300, seed=6), horizon=horizon, quantiles=quantiles)
    assert answer.status == 200, answer.body
    assert list(answer.body["quantiles"]) == keys and answer.body["prediction_horizon"] == steps
    for key in keys:
        assert answer.body["quantiles"][key] == full["quantiles"][key][:steps]
    assert answer.body["predicted_prices"] == full["predicted_prices"][:steps]


@pytest.mark.parametrize(
    ("horizon", "quantiles", "words"),
    [
        ("0", None, ["'horizon'", "0 is out of range", "1 to 5"]),
        ("6", None, ["'horizon'", "1 to 5"]),
        ("two", None, ["'horizon'", "not an integer"]),
        (None, "0.1", ["'quantiles'", "'0.1'", "0.05, 0.25, 0.5, 0.75, 0.95"]),
        (None, "0.05,x", ["'quantiles'", "'x'"]),
        (None, ",", ["'quantiles'", "no level given"]),
    ],
)
def test_bad_options_are_422s_naming_the_option_and_range(forecaster, horizon, quantiles, words):
    answer = one(forecaster, price_csv(300, seed=6), horizon=horizon, quantiles=quantiles)
    assert (answer.status, answer.reason) == (422, "bad_option")
    for word in words:
        assert word in answer.body["error"], answer.body["error"]


def test_batch_invariance_with_quantiles(forecaster):
    payloads = [price_csv(300 + k, seed=10 + k) for k in range(6)]
    together = forecaster.predict(payloads)
    for payload, batched in zip(payloads, together, strict=True):
        alone = forecaster.predict([payload])[0]
        for level in LEVELS:
            np.testing.assert_allclose(batched.body["quantiles"][level], alone.body["quantiles"][level], rtol=1e-6)


def test_json_request_many_series_one_bad(forecaster):
    series = [("a", *price_series(300, seed=20)), ("b", *price_series(290, seed=21)), ("c", *price_series(100, 22))]
    document = request_document("alm_quantiles", series, horizon=3, quantiles=[0.05, 0.95])
    document["inputs"].append(
        {**document["inputs"][0], "name": "d", "series": [1.0, -2.0], "start_timestamp": "2024-01-02T00:00:00Z"}
    )
    with pytest.MonkeyPatch.context() as patch:
        calls = []
        original = forecaster.pipeline.forward
        patch.setattr(forecaster.pipeline, "forward", lambda windows: calls.append(len(windows)) or original(windows))
        answer = one(forecaster, json.dumps(document).encode(), content_type="application/json")
    assert calls == [2], "the request's valid series go through one forward"
    assert answer.status == 200 and answer.body["status"] == "partial" and answer.body["model"] == "alm_quantiles"
    outputs = answer.body["outputs"]
    assert [o["status"] for o in outputs] == ["completed", "completed", "error", "error"]
    assert (
        "Need at least 274, got 100" in outputs[2]["error"]["message"] and outputs[2]["error"]["type"] == "too_few_rows"
    )
    assert outputs[3]["error"]["param"] == "inputs[3].series[1]" and "positive" in outputs[3]["error"]["message"]
    for output, seed, rows in ((outputs[0], 20, 300), (outputs[1], 21, 290)):
        content = output["content"][0]
        csv = one(forecaster, price_csv(rows, seed), horizon="3", quantiles="0.05,0.95").body
        # the same numbers as the CSV request, up to batch invariance (two series per forward here)
        assert content["mean_forecast"] == pytest.approx(csv["predicted_prices"], rel=1e-6)
        for level, values in csv["quantiles"].items():
            assert content["quantiles"][level] == pytest.approx(values, rel=1e-6)
        assert content["frequency"] == "D"
    assert outputs[0]["content"][0]["start_timestamp"] == str(np.datetime64(series[0][1][0], "D") + 300) + "T00:00:00Z"


@pytest.mark.parametrize(
    ("document", "param", "words"),
    [
        (b"{not json", "", ["not valid JSON"]),
        ({"inputs": []}, "model", ["'model'"]),
        ({"model": "m", "inputs": {}}, "inputs", ["'inputs'"]),
        ({"model": "m", "inputs": [{"series": [1.0]}]}, "inputs[0].name", ["'inputs[0].name'"]),
        (
            {"model": "m", "inputs": [{"name": "x"}, {"name": "x"}]},
            "inputs[1].name",
            ["'inputs[1].name'", "not unique"],
        ),
        ({"model": "m", "inputs": [{"name": "x"}], "options": []}, "options", ["'options'"]),
    ],
)
def test_a_malformed_document_is_a_kserve_400_naming_the_field(forecaster, document, param, words):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    answer = one(forecaster, body, content_type="application/json")
    assert (answer.status, answer.reason) == (400, "bad_json")
    error = answer.body["error"]
    assert error == {"code": "400", "message": error["message"], "param": param, "type": "bad_json"}
    for word in words:
        assert word in error["message"]


def test_json_options_are_checked_like_headers(forecaster):
    document = request_document("m", [("a", *price_series(300, seed=30))], horizon=9)
    answer = one(forecaster, document)
    assert (answer.status, answer.reason) == (422, "bad_option")
    assert answer.body["error"]["param"] == "options.horizon" and "1 to 5" in answer.body["error"]["message"]


def test_seed_format_checkpoints_answer_as_before(tmp_path):
    seed = Forecaster.from_checkpoint(write_checkpoint(tmp_path / "tiny.pt", TINY), "tiny", device="cpu")
    answer = seed.predict([embeddings_csv(20, 8)])[0]
    assert answer.status == 200 and "quantiles" not in answer.body and answer.body["prediction_horizon"] == 5
    assert seed.describe()["quantiles"] is None
    refused = seed.predict([Request(embeddings_csv(20, 8), quantiles="0.5")])[0]
    assert (refused.status, refused.reason) == (422, "bad_option") and "no quantiles" in refused.body["error"]
    cut = seed.predict([Request(embeddings_csv(20, 8), horizon="2")])[0]
    assert cut.body["predicted_prices"] == answer.body["predicted_prices"][:2]


def test_an_ohlcv_model_names_what_it_needs_when_given_one_price():
    ohlcv_model = Forecaster.from_checkpoint(ROOT / "models" / "sp500_xlstm.pt", device="cpu")
    close_only, price_only = ohlcv_model.predict([price_csv(300, seed=1), price_csv(300, 1, header="Date,Price")])
    assert (close_only.status, close_only.reason) == (422, "missing_columns")
    assert "Missing required OHLCV columns: Open, High, Low, Volume" in close_only.body["error"]
    assert (price_only.status, price_only.reason) == (422, "ohlcv_required")
    assert "needs daily OHLCV bars" in price_only.body["error"]


@pytest.mark.parametrize(
    ("head", "words"),
    [
        ({"levels": [0.05, 0.5], "offsets": torch.zeros(5, 2)}, ["odd in number"]),
        ({"levels": [0.05, 0.5, 0.95], "offsets": torch.zeros(5, 3)}, ["25 outputs", "3 levels"]),
        ({"levels": [0.05, 0.25, 0.5, 0.75, 0.95], "offsets": torch.zeros(4, 5)}, ["(5, 5) tensor"]),
        ({"levels": [0.05, 0.25, 0.5, 0.75, 0.95], "offsets": torch.full((5, 5), float("nan"))}, ["finite"]),
        ([1, 2], ["must be a dict"]),
    ],
)
def test_bad_quantile_heads_are_refused(head, words):
    payload = torch.load(CHECKPOINT, weights_only=True)
    payload["quantile_head"] = head
    with pytest.raises(CheckpointError) as error:
        build_checkpoint(payload, CHECKPOINT)
    for word in words:
        assert word in str(error.value)


@settings(max_examples=200, deadline=None)
@given(
    raw=st.lists(st.floats(-50, 50), min_size=25, max_size=25),
    offsets=st.lists(st.floats(-3, 3), min_size=25, max_size=25),
    sigma=st.floats(1e-5, 0.5),
)
def test_quantiles_never_cross(raw, offsets, sigma):
    head = QuantileHead((0.05, 0.25, 0.5, 0.75, 0.95), {"price": np.array(offsets).reshape(5, 5)})
    window = Window(np.zeros((20, 19), dtype=np.float32), 100.0, sigma)
    _, values = head.forecast(np.array([raw], dtype=np.float32), [window], [PRICE])
    assert (np.diff(values[0], axis=1) >= 0).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(274, 320), drift=st.floats(-0.002, 0.002))
def test_served_quantiles_never_cross_for_any_valid_series(forecaster, seed, rows, drift):
    days, closes = price_series(rows, seed)
    closes = closes * np.exp(drift * np.arange(rows))
    answer = one(forecaster, prices_csv(days, closes))
    assert answer.status == 200, answer.body
    grid = np.array([answer.body["quantiles"][level] for level in LEVELS])
    assert (np.diff(grid, axis=0) >= 0).all()
