"""The book evaluation: its scores on hand-checkable cases, the joint baselines (shapes, no data
after the origin), the report writer on a tiny run, the book mode of scripts/backtest.py.

The engine runs through the served path on the default model (models/alm_quantiles.pt), on a
small synthetic book (two correlated random walks, one of them a level) so the whole file
stays within seconds.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import numpy as np
import pytest

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.train import book_backtest, book_baselines, book_report
from alm_forecaster.train import book_scoring as scoring
from alm_forecaster.train.book_data import Book
from tests.helpers import ROOT

SMALL = {"every": 60, "history": 300, "paths": 200}


@pytest.fixture(scope="module")
def forecaster() -> Forecaster:
    return Forecaster.from_checkpoint(ROOT / "models" / "alm_quantiles.pt", "alm_quantiles", device="cpu")


def synthetic(rows: int = 700, seed: int = 1) -> Book:
    """A price and a level moving together (correlation 0.8), business days from 2010."""
    rng = np.random.default_rng(seed)
    shocks = rng.standard_normal((rows, 2)) @ np.linalg.cholesky([[1.0, 0.8], [0.8, 1.0]]).T
    price = 100 * np.exp(np.cumsum(0.01 * shocks[:, 0]))
    level = 2.0 + np.cumsum(0.05 * shocks[:, 1])
    dates = np.busday_offset("2010-01-01", np.arange(rows), roll="forward").astype("datetime64[D]")
    values = np.stack([price, level], axis=1)
    return Book("tiny", ("eq", "rate"), ("price", "level"), dates, values, np.array([1e6, -2e5]), str(dates[400]))


def test_violations_and_the_var_tests_count_right():
    pnl = np.array([-5.0, -1.0, 2.0, -3.0])
    hits = scoring.violations(pnl, np.array([4.0, 4.0, 4.0, 2.0]))  # -5 < -4 and -3 < -2; -4 would not count
    assert hits.tolist() == [True, False, False, True]
    assert not scoring.violations(np.array([-4.0]), np.array([4.0]))[0]
    tests = scoring.var_tests(hits, 0.25)
    assert tests["violations"] == 2 and tests["expected"] == 1.0 and tests["rate"] == 0.5
    assert 0 < tests["kupiec_p"] < 1


def test_acerbi_szekely_z2_by_hand():
    # one violation (-3 beyond VaR 1) of 4 at tail 0.25, ES 2: -3 / (4 x 0.25 x 2) + 1 = -0.5
    pnl = np.array([-3.0, 0.0, 0.5, -0.5])
    z2 = scoring.acerbi_szekely_z2(pnl, np.ones(4), np.full(4, 2.0), 0.25)
    assert z2 == pytest.approx(-0.5)
    assert scoring.acerbi_szekely_z2(np.zeros(4), np.ones(4), np.full(4, 2.0), 0.25) == 1.0  # no violation


def test_z2_test_accepts_outcomes_from_the_forecast_and_rejects_thrice_the_spread():
    rng = np.random.default_rng(0)
    grid = np.sort(rng.standard_normal(4000))[np.linspace(0, 3999, 500).astype(int)]
    samples = np.tile(grid, (400, 1))
    var, es = [np.full(400, v) for v in (-np.quantile(grid, 0.025), -grid[grid <= np.quantile(grid, 0.025)].mean())]
    right = scoring.z2_test(rng.standard_normal(400), var, es, 0.025, samples, rng)
    wrong = scoring.z2_test(3 * rng.standard_normal(400), var, es, 0.025, samples, rng)
    assert right["p"] > 0.01 and right["critical_5pct"] < 0
    assert wrong["p"] < 0.01 and wrong["z2"] < wrong["critical_5pct"]


def test_energy_and_variogram_scores_of_a_point_mass():
    point = np.zeros((7, 2))
    assert scoring.energy(np.array([3.0, 4.0]), point) == pytest.approx(5.0)  # ||x - y||, no spread
    obs = np.array([1.0, 3.0])
    assert scoring.variogram(obs, np.tile(obs, (5, 1))) == pytest.approx(0.0)
    # |1 - 3|^0.5 against a point mass with equal coordinates: both pairs (i, j) and (j, i) count
    assert scoring.variogram(obs, np.ones((5, 2))) == pytest.approx(2 * (2**0.5) ** 2)


def test_pinball_basel_effective_sample_and_correlation():
    # y = 0, the median forecast 1: 0.5 x 1; over two levels (0.25 forecast -1, 0.75 forecast 1): 0.25
    assert scoring.pinball(np.zeros(1), np.ones((1, 1)), (0.5,))[0] == pytest.approx(0.5)
    assert scoring.pinball(np.zeros(1), np.array([[-1.0, 1.0]]), (0.25, 0.75))[0] == pytest.approx(0.25)
    quiet = np.zeros(250, bool)
    assert [w["zone"] for w in scoring.basel_windows(quiet, 250)] == ["green"]
    assert scoring.basel_windows(np.zeros(3, bool), 3)[0]["zone"] == "green"  # none: green at any size
    for count, zone in ((4, "green"), (5, "yellow"), (10, "red")):
        hits = quiet.copy()
        hits[:count] = True
        assert scoring.basel_windows(hits, 250)[0]["zone"] == zone, count  # Basel's own table
    assert len(scoring.basel_windows(np.zeros(600, bool), 250)) == 2  # the last 100: under half, dropped
    assert scoring.effective_sample(200, 5, 1) == 200 and scoring.effective_sample(200, 5, 20) == 50
    x = np.random.default_rng(0).standard_normal(100)
    assert scoring.mean_pairwise_correlation(np.stack([x, 2 * x, -x], axis=1)) == pytest.approx(-1 / 3)
    assert math.isnan(scoring.mean_pairwise_correlation(x[:, None]))
    dm = scoring.diebold_mariano(np.ones(50), np.ones(50) + np.linspace(0, 1, 50), lags=2)
    assert dm["mean"] < 0 and dm["p"] < 0.05


def test_baselines_have_the_shapes_and_units_of_the_engine():
    book = synthetic()
    y, rng, horizons = book.coordinates()[:300], np.random.default_rng(0), (1, 10, 250)
    hs = book_baselines.historical(y, horizons, book.prices)
    assert [d.shape for d in hs] == [(299, 2), (290, 2), (50, 2)]
    np.testing.assert_allclose(hs[0][-1], [book.values[299, 0] / book.values[298, 0] - 1, y[299, 1] - y[298, 1]])
    for draws in (
        book_baselines.filtered_hs(y, horizons, book.prices, 64, rng),
        book_baselines.ccc_garch_t(y, horizons, book.prices, 64, rng)[0],
    ):
        assert [d.shape for d in draws] == [(64, 2)] * 3
        assert (draws[0][:, 0] > -1).all()  # a price's simple return
        assert np.std(draws[2]) > np.std(draws[0])
    g = book_baselines.fit_garch(y)
    again = book_baselines.ccc_garch_t(y, horizons, book.prices, 64, np.random.default_rng(5), g)[0]
    same = book_baselines.ccc_garch_t(y, horizons, book.prices, 64, np.random.default_rng(5), g)[0]
    np.testing.assert_array_equal(again[1], same[1])


def test_no_method_reads_data_after_the_origin(forecaster):
    """Every method's forecasts at the first origins are the same when everything after them
    changes (the realised outcomes do change)."""
    book = synthetic()
    bt = book_backtest.run(forecaster, book, horizons=(1, 10), **SMALL)
    cut = bt.origins[2] + 1
    values = book.values.copy()
    values[cut:] *= np.array([1.5, 1.0])
    values[cut:, 1] += 0.7
    changed = book_backtest.run(forecaster, dataclasses.replace(book, values=values), horizons=(1, 10), **SMALL)
    assert bt.served_difference < 1e-5  # the served 1-day book quantiles are the scored paths' (float32 sums)
    for m in book_backtest.METHODS:
        np.testing.assert_array_equal(bt.quantiles[m][:3], changed.quantiles[m][:3], err_msg=m)
        np.testing.assert_array_equal(bt.var[m][:3], changed.var[m][:3], err_msg=m)
    assert not np.array_equal(bt.realised[2], changed.realised[2])  # the 10-day outcome crosses the cut
    assert not np.array_equal(bt.quantiles["engine"][3:], changed.quantiles["engine"][3:])
    # dependence: the engine keeps the history's, the independent paths lose it
    assert np.nanmean(bt.correlation["engine"][:, 0]) > 0.5 > abs(np.nanmean(bt.correlation["independent"][:, 0]))


def test_the_report_writes_the_verdict_table(forecaster, tmp_path, monkeypatch):
    monkeypatch.setitem(book_report.BOOKS, "tiny", lambda start=None: synthetic())
    results = book_report.evaluate(forecaster, ["tiny"], {"tiny": 60}, history=300, paths=200)
    written = book_report.write(results, tmp_path, "book", "python scripts/evaluate_book.py CKPT", 1.0)
    text = (tmp_path / "book.md").read_text()
    assert "| target | figure | verdict |" in text
    for label in ("(1) book VaR 95% and 99%", "(2) Basel", "(3) book P&L pinball", "(4) energy", "(5) variogram"):
        assert label in text, label
    assert "(6) per-series 90% coverage within 3 points" in text and "(7)" in text
    assert results["checkpoint_sha256"] in text and "python scripts/evaluate_book.py CKPT" in text
    data = json.loads((tmp_path / "book.json").read_text())
    assert {row["target"][:3] for row in data["verdict"]} >= {"(1)", "(2)", "(3)", "(4)", "(5)", "(6)", "(7)"}
    assert all(row["holds"] in (True, False, None) for row in data["verdict"])
    one = data["books"][0]["horizons"][0]  # the 1-day figures: the daily pass, every day
    assert one["h"] == 1 and one["every"] == 1 and one["origins"] == data["books"][0]["daily"]["origins"] == 299
    assert data["books"][0]["horizons"][1]["every"] == 60 and data["books"][0]["basel"]["per_window"] == 250
    assert {p.suffix for p in written} == {".md", ".json", ".png"} and len(written) == 5


def _backtest_main():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("backtest_script", ROOT / "scripts" / "backtest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_the_book_backtest_command_on_a_wide_csv(tmp_path, capsys):
    book = synthetic()
    path = tmp_path / "book.csv"
    rows = [f"{d},{float(a)!r},{float(b)!r}" for d, (a, b) in zip(book.dates, book.values, strict=True)]
    path.write_text("\n".join(["Date,eq,rate", *rows]) + "\n")
    checkpoint = str(ROOT / "models" / "alm_quantiles.pt")
    args = ["--checkpoint", checkpoint, str(path), "--exposures", "eq=1e6,rate=-2e5", "--kinds", "rate=level"]
    args += ["--start", str(book.dates[400]), "--every", "60", "--history", "300", "--paths", "200"]
    args += ["--json", str(tmp_path / "m.json"), "--plot", str(tmp_path / "fan.png")]
    main = _backtest_main()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "h = 1 days" in out and "h = 250 days" not in out and "Basel traffic light" in out
    assert "multivariate" not in out and "ccc_garch_t" in out and "independent" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["kinds"] == ["price", "level"] and metrics["exposures"] == {"eq": 1e6, "rate": -2e5}
    assert (tmp_path / "fan.png").stat().st_size > 0
    assert main([*args[:4], "eq=1e6,nope=1", *args[5:]]) == 2
    assert "nope" in capsys.readouterr().err
