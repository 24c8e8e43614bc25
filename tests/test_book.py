"""Books in-process: the request contract, the path engine's promises, the risk summaries.

The default model (models/alm_quantiles.pt) on real series: the S&P 500 and WTI closes shipped
with `arch` and the 10-year Treasury yield (data/), aligned on their common days.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from alm_forecaster import book, risk
from alm_forecaster.forecaster import Forecaster, Request
from alm_forecaster.train import price_series
from tests.helpers import ROOT

LEVELS = [0.05, 0.25, 0.5, 0.75, 0.95]


@pytest.fixture(scope="module")
def forecaster() -> Forecaster:
    return Forecaster.from_checkpoint(ROOT / "models" / "alm_quantiles.pt", "alm_quantiles", device="cpu")


@pytest.fixture(scope="module")
def history() -> dict:
    """400 common days of three real series ending 2014-12-31 (the Treasury file's end)."""
    loaded = {
        "spx": price_series.load("sp500"),
        "wti": price_series.load("wti"),
        "ust10y": price_series.load("ust:10Y"),
    }
    common = loaded["spx"].dates
    for series in loaded.values():
        common = np.intersect1d(common, series.dates)
    common = common[-400:]
    values = {name: s.prices[np.searchsorted(s.dates, common)] for name, s in loaded.items()}
    return {"dates": common, **values}


def document(history: dict, names=("spx", "wti", "ust10y"), **scenarios) -> dict:  # noqa: ANN001
    start = str(history["dates"][0]) + "T00:00:00Z"
    inputs = [
        {
            "type": "univariate_time_series",
            "name": name,
            "series": [float(v) for v in history[name]],
            "frequency": "D",
            "start_timestamp": start,
            **({"kind": "level"} if name == "ust10y" else {}),
        }
        for name in names
    ]
    options = {"horizon": scenarios.pop("horizon", 20), "quantiles": scenarios.pop("quantiles", LEVELS)}
    defaults = {"paths": 4001, "seed": 3, "exposures": {"spx": 1e6, "wti": -5e5, "ust10y": -8e4}}
    options["scenarios"] = {**defaults, **scenarios}
    return {"model": "alm_quantiles", "inputs": inputs, "options": options}


def answer(forecaster: Forecaster, doc: dict):
    return forecaster.predict([Request(doc, "application/json")])[0]


def test_each_series_agrees_with_the_single_series_model_at_steps_1_to_5(forecaster, history):
    doc = document(history, horizon=60)
    booked = answer(forecaster, doc)
    assert booked.status == 200, booked.body
    single = answer(forecaster, {**doc, "options": {"quantiles": LEVELS}})
    for got, want in zip(booked.body["outputs"], single.body["outputs"], strict=True):
        for level in map(str, LEVELS):
            # the engine's marginals at the model's steps are the model's, rank for rank
            np.testing.assert_allclose(
                got["content"][0]["quantiles"][level][:5], want["content"][0]["quantiles"][level], rtol=1e-6
            )
        assert len(got["content"][0]["mean_forecast"]) == 60


def test_same_seed_same_bytes_other_seed_other_paths(forecaster, history):
    first = answer(forecaster, document(history))
    again = answer(forecaster, document(history))
    other = answer(forecaster, document(history, seed=4))
    assert json.dumps(first.body["book"]) == json.dumps(again.body["book"])
    assert first.body["book"]["var"] != other.body["book"]["var"]


def test_book_quantiles_are_the_exposure_times_the_series_change(forecaster, history):
    """A one-series book: P&L = exposure x simple return (a price), or x difference (a level)."""
    for name, exposure in (("spx", 2e6), ("ust10y", -8e4)):
        doc = document(history, names=(name,), exposures={name: exposure})
        body = answer(forecaster, doc).body
        anchor = float(history[name][-1])
        quantiles = body["outputs"][0]["content"][0]["quantiles"]
        for level in LEVELS:
            mirror = f"{1 - level:g}" if exposure < 0 else f"{level:g}"
            series = np.array(quantiles[mirror])
            change = series / anchor - 1 if name == "spx" else series - anchor
            np.testing.assert_allclose(body["book"]["quantiles"][f"{level:g}"], exposure * change, rtol=1e-5, atol=1e-6)


def test_var_and_es_are_the_loss_tail(forecaster, history):
    body = answer(forecaster, document(history, quantiles=[0.01, 0.05], risk_levels=[0.95, 0.99])).body["book"]
    np.testing.assert_allclose(body["var"]["0.95"], -np.array(body["quantiles"]["0.05"]))
    np.testing.assert_allclose(body["var"]["0.99"], -np.array(body["quantiles"]["0.01"]))
    assert (np.array(body["es"]["0.99"]) >= np.array(body["var"]["0.99"])).all()
    assert (np.array(body["var"]["0.99"]) > np.array(body["var"]["0.95"])).all()
    pnl = np.random.default_rng(0).standard_t(4, 100_000)
    var, es = risk.var_es(pnl, [0.975])
    worst = np.sort(pnl)[: int(np.rint(0.025 * 99_999)) + 1]
    assert var[0] == -worst[-1] and es[0] == pytest.approx(-worst.mean())


def test_volatility_mean_reverts_along_the_path(forecaster, history):
    """A yield whose last month moved 4 times its usual size: its 1-year spread grows slower than
    sqrt(h) from the first day's; one whose last month moved a quarter of it: faster (volatility
    returns towards the history's level both ways, where sqrt(h) would keep the first day's)."""
    growth = {}
    for name, factor in (("violent", 4.0), ("quiet", 0.25)):
        steps = np.diff(history["ust10y"])
        steps[-20:] *= factor
        moved = {**history, "ust10y": history["ust10y"][0] + np.concatenate([[0.0], np.cumsum(steps)])}
        body = answer(forecaster, document(moved, names=("ust10y",), horizon=250, exposures={"ust10y": 1.0})).body
        width = np.array(body["book"]["quantiles"]["0.95"]) - np.array(body["book"]["quantiles"]["0.05"])
        growth[name] = width[-1] / (width[0] * np.sqrt(250))
    assert growth["violent"] < 0.8 and growth["quiet"] > 1.25, growth  # sqrt(h) scaling: 1.0 both


def test_dependence_comes_from_the_history(forecaster, history):
    """Two series with the same daily changes move together in every path: long one, short
    the other, and the book does not move; with independent changes it does."""
    twin = {**history, "wti": history["spx"] * 0.05}
    hedged = answer(forecaster, document(twin, names=("spx", "wti"), exposures={"spx": 1e6, "wti": -1e6})).body
    assert np.abs(hedged["book"]["var"]["0.99"]).max() < 1e-6 * 1e6
    apart = answer(forecaster, document(history, names=("spx", "wti"), exposures={"spx": 1e6, "wti": -1e6})).body
    assert min(apart["book"]["var"]["0.99"]) > 1e4


def test_return_paths_and_their_limit(forecaster, history):
    body = answer(forecaster, document(history, paths=50, horizon=4, return_paths=True)).body["book"]
    paths = np.array(body["paths"])
    assert paths.shape == (50, 4, 3)
    refused = answer(forecaster, document(history, paths=5000, horizon=60, return_paths=True))
    assert refused.status == 422 and refused.body["error"]["param"] == "options.scenarios.return_paths"


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"paths": 0}, "options.scenarios.paths", ["from 1 to 100,000"]),
        ({"horizon": 251}, "options.horizon", ["from 1 to 250"]),
        ({"quantiles": [0.0, 0.5]}, "options.quantiles", ["strictly between 0 and 1"]),
        ({"risk_levels": [1.5]}, "options.scenarios.risk_levels", ["strictly between 0 and 1"]),
        ({"exposures": {"nope": 1}}, "options.scenarios.exposures.nope", ["names no input", "'spx'"]),
        ({"exposures": {"spx": "1e6"}}, "options.scenarios.exposures.spx", ["not a finite number"]),
        ({"exposures": []}, "options.scenarios.exposures", ["not an object"]),
        ({"return_paths": "yes"}, "options.scenarios.return_paths", ["not a boolean"]),
        ({"seed": -1}, "options.scenarios.seed", ["from 0 to"]),
    ],
)
def test_bad_book_options_are_422s_naming_the_option_and_the_limit(forecaster, history, change, param, words):
    refused = answer(forecaster, document(history, **change))
    assert refused.status == 422, refused.body
    error = refused.body["error"]
    assert error["param"] == param and error["code"] == "422"
    for word in words:
        assert word in error["message"], error["message"]


def test_the_work_of_a_book_is_bounded(forecaster, history):
    doc = document(history, paths=100_000, horizon=250)
    doc["inputs"] += [{**item, "name": item["name"] + "_2"} for item in doc["inputs"]]  # 6 series
    refused = answer(forecaster, doc)
    assert refused.status == 422 and refused.body["error"]["param"] == "options.scenarios.paths"
    assert "150,000,000 is over the limit" in refused.body["error"]["message"]
    assert "at most 125,000,000" in refused.body["error"]["message"]


def test_a_book_is_forecast_whole_or_not_at_all(forecaster, history):
    doc = document(history)
    doc["inputs"][1]["series"] = doc["inputs"][1]["series"][1:]  # one day short
    short = answer(forecaster, doc)
    assert short.status == 422 and short.body["error"]["param"] == "inputs[1].series"
    assert "aligned" in short.body["error"]["message"] and "399 values" in short.body["error"]["message"]
    doc = document(history)
    doc["inputs"][2]["start_timestamp"] = "2013-01-02T00:00:00Z"
    assert answer(forecaster, doc).body["error"]["param"] == "inputs[2].start_timestamp"
    doc = document(history)
    doc["inputs"][0]["series"][10] = None  # a missing value refuses the book, naming it
    missing = answer(forecaster, doc)
    assert missing.status == 422 and missing.body["error"]["param"] == "inputs[0].series[10]"
    doc = document(history)
    doc["inputs"][0]["series"] = doc["inputs"][0]["series"][:100]
    for item in doc["inputs"][1:]:
        item["series"] = item["series"][:100]
    assert "Need at least 274" in answer(forecaster, doc).body["error"]["message"]


def test_a_csv_book_is_the_same_book(forecaster, history):
    header = "Date,spx,wti,ust10y"
    columns = zip(history["dates"], *(history[n].tolist() for n in ("spx", "wti", "ust10y")), strict=True)
    rows = [f"{d},{a!r},{b!r},{c!r}" for d, a, b, c in columns]
    body = ("\n".join([header, *rows]) + "\n").encode()
    scenario = {"paths": "4001", "seed": "3", "exposures": "spx=1e6,wti=-5e5,ust10y=-8e4", "kinds": "ust10y=level"}
    csv = forecaster.predict([Request(body, "text/csv", "20", "0.05,0.25,0.5,0.75,0.95", None, scenario)])[0]
    assert csv.status == 200, csv.body
    json_book = answer(forecaster, document(history)).body
    assert csv.body["book"] == json_book["book"]
    for got, want in zip(csv.body["outputs"], json_book["outputs"], strict=True):
        assert got["content"][0]["quantiles"] == want["content"][0]["quantiles"]
    zero = body.replace(f",{float(history['ust10y'][5])!r}\n".encode(), b",0.0\n", 1)
    scenario_price = {**scenario, "kinds": ""}
    refused = forecaster.predict([Request(zero, "text/csv", None, None, None, scenario_price)])[0]
    assert refused.status == 422 and "X-Series-Kinds" in refused.body["error"]["message"]


def test_a_point_model_refuses_a_book(history, tmp_path):
    from alm_forecaster.testing.synthetic import TINY, write_checkpoint

    point = Forecaster.from_checkpoint(write_checkpoint(tmp_path / "tiny.pt", TINY), "tiny", device="cpu")
    refused = point.predict([Request(document(history), "application/json")])[0]
    assert refused.status == 422 and refused.body["error"]["param"] == "options.scenarios"


def test_book_option_parsing_helpers():
    assert book.pairs("a=1e6, b = -5e5", "exposures") == {"a": "1e6", "b": "-5e5"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        book.pairs("a=1,b", "exposures")
