"""The evaluation of level series: the kind-aware backtest and the rates report.

A synthetic level series (a random walk in percentage points that crosses zero) is backtested
through the served path (`Forecaster.predict` with ``Request(csv, kind="level")``): realised
changes are differences, the model's quantiles are the served values minus the anchor, the
baselines come out in the same shape, and the series shifted down by a constant scores the same.
The report command (`scripts/evaluate.py` on a ``file.csv@level``) writes its Markdown with the
verdict table on a few origins.

The model is the shipped checkpoint; when it is not calibrated for levels, its price offsets are
copied to the level kind (the network is the same; only the calibration differs), so these tests
hold for any quantile checkpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.request import Request
from alm_forecaster.train import backtest
from alm_forecaster.train import distribution_scoring as scoring
from tests.helpers import ROOT

SHIPPED = ROOT / "models" / "alm_quantiles.pt"
ROWS = 274 + 5 + 30  # a window, 5 days after the last origin, 31 origins
LEVEL_SPANS = {
    "level_validation_start": "2006-01-01",
    "level_calibration_start": "2008-01-01",
    "level_holdout_start": "2011-01-01",
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The shipped checkpoint, calibrated for levels (its price offsets copied if it is not)."""
    state = torch.load(SHIPPED, weights_only=True)
    head = state["quantile_head"]
    if "level" not in head.get("kind_offsets", {}):
        head["kind_offsets"] = {**head.get("kind_offsets", {}), "level": head["offsets"].clone()}
    spans = state.setdefault("metadata", {}).setdefault("spans", {})
    for key, value in LEVEL_SPANS.items():
        spans.setdefault(key, value)
    path = tmp_path_factory.mktemp("checkpoint") / "levels.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def forecaster(checkpoint):
    return Forecaster.from_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def rates():
    """(business days, a yield in percent): a random walk with a downward drift that crosses zero
    among the origins (the value at the 16th origin is exactly 0)."""
    rng = np.random.default_rng(19)
    days = np.busday_offset("2012-01-02", np.arange(ROWS), roll="forward")
    walk = np.cumsum(rng.normal(-0.01, 0.04, ROWS))
    values = np.round(walk - walk[273 + 15], 6)
    return days, values


def level_csv(days: np.ndarray, values: np.ndarray) -> str:
    return "Date,Value\n" + "".join(f"{d},{v!r}\n" for d, v in zip(days, values.tolist(), strict=True))


def test_level_backtest_goes_through_the_served_path(forecaster, rates):
    days, values = rates
    bt = backtest.run(forecaster, "rate", days, values, kind="level")
    first = 273  # the first origin with a full window behind it
    origins = first + np.arange(len(bt.dates))
    assert bt.kind == "level" and len(origins) == 31
    assert values[origins].min() < 0 < values[origins].max()  # the series crosses zero among the origins
    # realised changes are differences, in the series' units
    for h in range(1, 6):
        np.testing.assert_array_equal(bt.realised[:, h - 1], values[origins + h] - values[origins])
    # the model's quantiles are the served answer's values minus the anchor
    i = 20
    t = origins[i]
    outcome = forecaster.predict([Request(level_csv(days[: t + 1], values[: t + 1]), kind="level")])[0]
    assert outcome.ok, outcome.body
    served = np.array([outcome.body["quantiles"][f"{lv:g}"] for lv in bt.levels]).T
    assert outcome.body["current_price"] == values[t]
    # one window alone vs in a batch: equal up to batch invariance
    np.testing.assert_allclose(bt.quantiles["model"][i], served - values[t], rtol=1e-6, atol=1e-9)
    assert bt.prices[i] == values[t]
    # the baselines: one (origins, steps, levels) array each, on the same changes
    assert set(bt.quantiles) == {"model", "historical_simulation", "filtered_hs_ewma", "garch11_t"}
    for q in bt.quantiles.values():
        assert q.shape == (31, 5, 5) and np.isfinite(q).all()
        assert (np.diff(q, axis=-1) >= 0).all()
    m = backtest.metrics(bt)
    assert m["kind"] == "level" and m["unit"] == backtest.UNITS["level"][0]
    # losses in hundredths of the series' unit (bp of a yield in percent)
    y, q05 = bt.realised[:, 0], bt.quantiles["model"][:, 0, 0]
    assert m["methods"]["model"]["steps"][0]["pinball_bp"]["0.05"] == pytest.approx(scoring.pinball(y, q05, 0.05) * 100)
    assert m["point_mae_bp"]["persistence"][0] == pytest.approx(np.mean(np.abs(y)) * 100)


def test_a_shifted_level_scores_the_same(forecaster, rates):
    days, values = rates
    shifted = values - 3.0
    assert shifted.max() < 0  # every value negative
    a = backtest.metrics(backtest.run(forecaster, "rate", days, values, kind="level", garch=False))
    b = backtest.metrics(backtest.run(forecaster, "rate", days, shifted, kind="level", garch=False))
    assert set(a["methods"]) == {"model", "historical_simulation", "filtered_hs_ewma"}
    for method, block in a["methods"].items():
        for s, t in zip(block["steps"], b["methods"][method]["steps"], strict=True):
            assert s["coverage90"] == pytest.approx(t["coverage90"], abs=1e-9)
            assert s["coverage50"] == pytest.approx(t["coverage50"], abs=1e-9)
            for level, loss in s["pinball_bp"].items():
                assert loss == pytest.approx(t["pinball_bp"][level], abs=1e-9), (method, level)


def test_a_model_without_level_calibration_refuses_a_level_backtest(tmp_path, rates):
    state = torch.load(SHIPPED, weights_only=True)
    state["quantile_head"].pop("kind_offsets", None)
    path = tmp_path / "prices_only.pt"
    torch.save(state, path)
    days, values = rates
    with pytest.raises(ValueError, match="does not forecast level series"):
        backtest.run(Forecaster.from_checkpoint(path, device="cpu"), "rate", days, values, kind="level")


def test_the_rates_report_command(checkpoint, rates, tmp_path):
    days, values = rates
    data = tmp_path / "rate.csv"
    data.write_text(level_csv(days, values))
    out = tmp_path / "report"
    command = [
        sys.executable,
        "scripts/evaluate.py",
        str(checkpoint),
        f"{data}@level",
        "--holdout-start",
        str(days[273]),
        "--every",
        "10",
        "--out",
        str(out),
        "--stem",
        "rates-report",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = (out / "rates-report.md").read_text()
    sha = Forecaster.from_checkpoint(checkpoint, device="cpu").loaded.sha256
    assert f"`{sha}`" in report and "--stem rates-report" in report and "## Verdict" in report
    assert "| target | figure | verdict |" in report
    for target in ("(a) 90% coverage", "(a) 50% coverage", "(b) mean pinball", "(c) mean pinball", "(d) every", "(e)"):
        assert f"| {target}" in report, target
    figures = json.loads((out / "rates-report.json").read_text())
    assert figures["checkpoint_sha256"] == sha and figures["unit"] == backtest.UNITS["level"][0]
    (series,) = figures["series"]
    assert series["origins"] == 4 and series["kind"] == "level"  # origins 273, 283, 293, 303
    assert set(series["methods"]) == {"model", "historical_simulation", "filtered_hs_ewma", "garch11_t"}
    assert series["shift_check"]["values"][1] < 0 and series["targets"]["shift"]["holds"]
    verdicts = {row["target"][:3]: row["holds"] for row in figures["verdict"]}
    assert verdicts["(d)"] is True and verdicts["(e)"] is None
    assert (out / "rates-report_coverage.png").exists() and len(list(out.glob("rates-report_*_fan.png"))) == 1
    assert "(d) every series shifted down by 3" in done.stdout
