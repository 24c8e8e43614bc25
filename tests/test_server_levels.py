"""Level series (rates, spreads: values that can be zero or negative) through the real TorchServe.

The shipped default model serves two series kinds (describe: ``series_kinds``). A yield sent
with ``X-Series-Kind: level`` (or the multipart field ``kind``, or ``"kind": "level"`` on a JSON
input) is forecast in differences; the same yield sent as a price is refused where it is zero,
and the refusal names the option that fixes it. Every answer equals the in-process
`Forecaster`'s; a series shifted down by 3 points (negative yields) is forecast exactly as the
original, shifted; bad level series fail alone and the worker keeps serving.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from alm_forecaster.forecaster import Request
from alm_forecaster.kserve import request_document
from alm_forecaster.testing.synthetic import price_series
from alm_forecaster.train import price_series as datasets
from alm_ops.api import custom_metadata
from alm_ops.launcher import TorchServe
from tests.corpus import base
from tests.helpers import ROOT

MODEL = "alm_quantiles"
CHECKPOINT = ROOT / "models" / "alm_quantiles.pt"
EXAMPLE = ROOT / "examples" / "ust_3m.csv"


def yields(tenor: str, end: str, rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    series = datasets.load(f"ust:{tenor}")
    stop = int(np.searchsorted(series.dates, np.datetime64(end)))
    return series.dates[stop - rows : stop], series.prices[stop - rows : stop]


def level_csv(dates: np.ndarray, values: np.ndarray, column: str = "Yield") -> bytes:
    return (f"Date,{column}\n" + "".join(f"{d},{v!r}\n" for d, v in zip(dates, values.tolist(), strict=True))).encode()


def csv_answer(served: TorchServe, body: bytes, **headers: str):
    return served.predict(MODEL, data=body, headers={"Content-Type": "text/csv", **headers})


def test_describe_names_the_series_kinds(served):
    meta = custom_metadata(served.describe(MODEL, customized=True))
    assert meta["series_kinds"] == ["price", "level"]


def test_a_yield_is_forecast_as_a_level_by_header_and_by_field(served, offline):
    body = EXAMPLE.read_bytes()
    want = offline.predict([Request(body, kind="level")])[0]
    assert want.ok, want.body
    by_header = csv_answer(served, body, **{"X-Series-Kind": "level"})
    by_field = served.predict(MODEL, files={"data": ("ust_3m.csv", body)}, data={"kind": "level"})
    for answer in (by_header, by_field):
        assert answer.status_code == 200, answer.text
        assert answer.json() == want.body
    # a level forecast is the last value plus changes in the series' own units (points)
    last = float(body.decode().splitlines()[-1].split(",")[1])
    assert want.body["current_price"] == last
    grid = np.array(list(want.body["quantiles"].values()))
    assert (np.diff(grid, axis=0) > 0).all() and np.abs(grid - last).max() < 1.0


def test_a_zero_yield_sent_as_a_price_names_the_option_that_fixes_it(served):
    dates, values = yields("3M", "2009-06-30")
    assert (values == 0).any(), "the 3M bill yield reached 0.00 in 2008-2009"
    answer = csv_answer(served, level_csv(dates, values, "3M"))
    assert answer.status_code == 422, answer.text
    message = answer.json()["error"]
    assert "column '3M': price must be positive, got 0" in message and "X-Series-Kind: level" in message
    assert csv_answer(served, level_csv(dates, values, "3M"), **{"X-Series-Kind": "level"}).status_code == 200


def test_a_level_shifted_negative_is_forecast_exactly_as_well(served, offline):
    dates, values = yields("2Y", "2014-12-31")
    original = csv_answer(served, level_csv(dates, values), **{"X-Series-Kind": "level"}).json()
    shifted = csv_answer(served, level_csv(dates, values - 3.0), **{"X-Series-Kind": "level"}).json()
    assert shifted["current_price"] < 0
    for level, grid in original["quantiles"].items():
        np.testing.assert_allclose(np.array(shifted["quantiles"][level]) + 3.0, grid, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"X-Series-Kind": "rate"}, ["Option 'kind'", "'rate' is not a series kind", "price, level"]),
        ({"X-Series-Kind": "LEVELS"}, ["Option 'kind'", "'LEVELS' is not a series kind"]),
    ],
)
def test_an_unknown_kind_is_a_422_naming_the_option_and_the_allowed_values(served, headers, words):
    answer = csv_answer(served, EXAMPLE.read_bytes(), **headers)
    assert answer.status_code == 422, answer.text
    for word in words:
        assert word in answer.json()["error"]


@pytest.mark.parametrize(
    ("cell", "words"),
    [("NaN", ["'NaN' is not a finite number"]), ("inf", ["'inf' is not a finite number"]), ("", ["empty value"])],
)
def test_bad_level_cells_are_named_and_the_worker_lives(served, cell, words):
    pids = {w["pid"] for w in served.workers(MODEL)}
    lines = EXAMPLE.read_text().splitlines()
    lines[200] = lines[200].split(",")[0] + "," + cell
    answer = csv_answer(served, ("\n".join(lines) + "\n").encode(), **{"X-Series-Kind": "level"})
    assert answer.status_code == 422, answer.text
    for word in ["Row 200 (line 201), column '3M'", *words]:
        assert word in answer.json()["error"]
    assert {w["pid"] for w in served.workers(MODEL)} == pids


def test_a_constant_level_is_refused_as_having_no_volatility(served):
    dates, _ = yields("3M", "2014-12-31")
    answer = csv_answer(served, level_csv(dates, np.full(len(dates), 0.25)), **{"X-Series-Kind": "level"})
    assert answer.status_code == 422 and "the last 274 values do not move" in answer.json()["error"]


def test_a_kind_on_a_model_without_levels_is_refused(served):
    """The session's tiny checkpoint (the platform's embeddings contract) forecasts prices only."""
    answer = served.predict("tiny", data=base(), headers={"Content-Type": "text/csv", "X-Series-Kind": "level"})
    assert answer.status_code == 422, answer.text
    assert "does not forecast level series; allowed: price" in answer.json()["error"]
    same = served.predict("tiny", data=base(), headers={"Content-Type": "text/csv", "X-Series-Kind": "price"})
    assert same.status_code == 200


def test_json_inputs_of_mixed_kinds(served, offline):
    price = ("spx", *price_series(300, seed=3))
    dates, values = yields("10Y", "2014-12-31")
    zero_dates, zero_values = yields("3M", "2009-06-30")
    document = request_document(
        MODEL,
        [price, ("ust10y", dates, values), ("negative", dates, values - 3.0), ("bills", zero_dates, zero_values)],
        kinds={"ust10y": "level", "negative": "level"},
    )
    document["inputs"].append({**document["inputs"][1], "name": "odd", "kind": "rate"})
    answer = served.predict(MODEL, data=json.dumps(document), headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [o["status"] for o in body["outputs"]] == ["completed", "completed", "completed", "error", "error"]
    zero, odd = body["outputs"][3]["error"], body["outputs"][4]["error"]
    assert zero["param"].startswith("inputs[3].series[") and '"kind": "level"' in zero["message"]
    assert odd["param"] == "inputs[4].kind" and "price, level" in odd["message"]
    want = offline.predict([Request(document, "application/json")])[0].body
    for got, ref in zip(body["outputs"][:3], want["outputs"][:3], strict=True):
        for level, grid in ref["content"][0]["quantiles"].items():
            assert got["content"][0]["quantiles"][level] == pytest.approx(grid, rel=1e-9, abs=1e-12)
    ust, negative = (body["outputs"][k]["content"][0]["quantiles"] for k in (1, 2))
    for level, grid in ust.items():
        np.testing.assert_allclose(np.array(negative[level]) + 3.0, grid, rtol=0, atol=1e-9)
