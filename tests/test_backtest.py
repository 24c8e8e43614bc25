"""The distribution tools a risk team runs: scores, VaR backtests, the backtest CLI, training.

Scores are checked against values worked out by hand and against the Basel Committee's own
traffic-light table; the backtest CLI runs on a small synthetic series through the served code
path; the quantile trainer is run twice on the same data and must give the same weights.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.testing.synthetic import price_series, prices_csv
from alm_forecaster.train import backtest
from alm_forecaster.train import distribution_scoring as scoring
from tests.helpers import ROOT

CHECKPOINT = ROOT / "models" / "alm_quantiles.pt"


def test_pinball_coverage_and_winkler_by_hand():
    y = np.array([1.0, 2.0, 3.0])
    assert scoring.pinball(y, np.full(3, 2.0), 0.9) == pytest.approx((0.9 * 1 + 0 + 0.1 * 1) / 3)
    assert scoring.coverage(y, np.full(3, 1.5), np.full(3, 3.0)) == pytest.approx(2 / 3)
    # width 1 each; y=1 is 0.5 below, so 2/0.5 * 0.5 = 2 added to that one
    assert scoring.winkler(y, np.full(3, 1.5), np.full(3, 2.5), 0.5) == pytest.approx((1 + 3 + 3) / 3)


def test_kupiec_and_christoffersen():
    exact = np.zeros(1000, dtype=bool)
    exact[::20] = True  # exactly 5%, evenly spread
    lr, p = scoring.kupiec(exact, 0.05)
    assert lr == pytest.approx(0.0, abs=1e-9) and p == pytest.approx(1.0)
    assert scoring.kupiec(np.r_[np.ones(150, bool), np.zeros(850, bool)], 0.05)[1] < 1e-6
    clustered = np.zeros(1000, dtype=bool)
    clustered[100:150] = True  # the same 5%, all in one run
    assert scoring.christoffersen(clustered)[1] < 1e-6
    independent = np.random.default_rng(0).random(1000) < 0.05  # a fixed draw: the test is deterministic
    assert scoring.christoffersen(independent)[1] > 0.05


@pytest.mark.parametrize(("exceptions", "zone"), [(4, "green"), (5, "yellow"), (9, "yellow"), (10, "red")])
def test_basel_zones_match_the_committees_table_for_99_percent(exceptions, zone):
    hits = np.zeros(250, dtype=bool)
    hits[:exceptions] = True
    assert scoring.basel_zone(hits, 0.01) == (zone, exceptions)


@pytest.fixture(scope="module")
def small_series(tmp_path_factory):
    days, closes = price_series(420, seed=7)
    path = tmp_path_factory.mktemp("prices") / "small.csv"
    path.write_bytes(prices_csv(days, closes))
    return path, days, closes


def test_backtest_cli_on_a_small_series(small_series, tmp_path):
    path, _, _ = small_series
    out, fan = tmp_path / "m.json", tmp_path / "fan.png"
    command = [sys.executable, "scripts/backtest.py", "--checkpoint", str(CHECKPOINT), str(path)]
    done = subprocess.run(
        [*command, "--json", str(out), "--plot", str(fan)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads(out.read_text())
    assert metrics["origins"] == 420 - 274 - 5 + 1
    assert set(metrics["methods"]) == {"model", "historical_simulation", "filtered_hs_ewma", "garch11_t"}
    for block in metrics["methods"].values():
        assert len(block["steps"]) == 5
        for step in block["steps"]:
            assert 0 <= step["coverage50"] <= step["coverage90"] <= 1 and step["pinball_mean_bp"] > 0
        assert block["var5_step1"]["basel_zone_last250"] in ("green", "yellow", "red")
    for method in ("model", "historical_simulation", "garch11_t"):
        assert method in done.stdout
    assert "Kupiec p" in done.stdout and fan.exists() and (tmp_path / "fan_coverage.png").exists()


def test_backtest_uses_the_served_path(small_series):
    _, days, closes = small_series
    forecaster = Forecaster.from_checkpoint(CHECKPOINT, device="cpu")
    bt = backtest.run(forecaster, "small", days, closes, baselines_too=False)
    first = 273  # the first origin with a full window behind it
    served = forecaster.predict([prices_csv(days[: first + 1], closes[: first + 1])])[0].body
    expected = np.log(np.array([served["quantiles"][f"{lv:g}"] for lv in bt.levels]).T / closes[first])
    # one window alone vs in a batch of 256: equal up to batch invariance
    np.testing.assert_allclose(bt.quantiles["model"][0], expected, rtol=1e-6)
    np.testing.assert_allclose(bt.realised[0], np.log(closes[first + 1 : first + 6] / closes[first]))


def test_quantile_training_is_reproducible_and_serves(tmp_path):
    days, closes = price_series(4300, seed=11, start="2000-01-03")
    data = tmp_path / "long.csv"
    data.write_bytes(prices_csv(days, closes))
    # a rate that crosses zero: a level series, trained on its own spans and calibrated on its own
    rate = np.cumsum(np.random.default_rng(1).normal(0, 0.05, 4300)) + 1.0
    assert rate.min() < 0 < rate.max()
    level = tmp_path / "rate.csv"
    level.write_bytes(prices_csv(days, rate, header="Date,Yield"))
    outputs = []
    for run in range(2):
        out = tmp_path / f"q{run}.pt"
        command = [
            sys.executable,
            "scripts/train_quantiles.py",
            "--series",
            str(data),
            "--series",
            f"{level}@level",
            "--output",
            str(out),
            "--epochs",
            "2",
            "--hidden-size",
            "8",
        ]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        outputs.append(out)
    first, second = (torch.load(p, weights_only=True) for p in outputs)
    for name, tensor in first["model_state_dict"].items():
        assert torch.equal(tensor, second["model_state_dict"][name]), name
    assert torch.equal(first["quantile_head"]["offsets"], second["quantile_head"]["offsets"])
    assert torch.equal(
        first["quantile_head"]["kind_offsets"]["level"], second["quantile_head"]["kind_offsets"]["level"]
    )
    loaded = load_checkpoint(outputs[0])
    assert loaded.quantile_head is not None and loaded.quantile_head.levels == (0.05, 0.25, 0.5, 0.75, 0.95)
    assert loaded.quantile_head.kinds == ("price", "level")
    assert [(s["name"].endswith("rate.csv"), s["kind"]) for s in first["metadata"]["trained_on"]][1] == (True, "level")
    assert first["metadata"]["spans"]["holdout_start"] == "2015-01-01"
