"""Evaluation metrics against hand-computed values, baselines, and the report end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alm_forecaster.train import datasets, scoring
from alm_forecaster.train.evaluation import evaluate, verdict, write_report
from alm_forecaster.train.training import TrainConfig, train


def test_horizon_metrics_by_hand():
    current = np.array([100.0, 200.0])
    predicted = np.array([[0.01, -0.02], [0.0, 0.05]])  # prices 101, 98 | 200, 210
    actual = np.array([[0.02, -0.01], [-0.01, 0.05]])  # prices 102, 99 | 198, 210
    m = scoring.horizon_metrics(predicted, actual, current)  # errors -1, -1 | 2, 0
    np.testing.assert_allclose(m["mae"], [1.5, 0.5])
    np.testing.assert_allclose(m["rmse"], [math.sqrt(2.5), math.sqrt(0.5)])
    np.testing.assert_allclose(m["mape"], [100 * (1 / 102 + 2 / 198) / 2, 100 * (1 / 99) / 2])
    np.testing.assert_allclose(m["directional_accuracy"], [50.0, 100.0])


def test_persistence_has_errors_equal_to_the_moves_and_no_direction():
    current = np.array([10.0, 20.0, 40.0])
    actual = np.array([[0.1], [-0.05], [0.0]])
    m = scoring.horizon_metrics(np.zeros_like(actual), actual, current)
    np.testing.assert_allclose(m["mae"], [(1 + 1 + 0) / 3])
    np.testing.assert_allclose(m["rmse"], [math.sqrt(2 / 3)])
    np.testing.assert_allclose(m["mape"], [100 * (1 / 11 + 1 / 19 + 0) / 3])
    assert m["directional_accuracy"] is None
    np.testing.assert_allclose(scoring.up_share(actual), [100 / 3])


def test_summary_is_plain_and_rounded():
    m = scoring.horizon_metrics(np.zeros((2, 1)), np.array([[0.1], [0.2]]), np.array([1.0, 1.0]))
    s = scoring.summary(m, digits=3)  # mape = 100 * (0.1 / 1.1 + 0.2 / 1.2) / 2
    assert s == {"mae": [0.15], "rmse": [0.158], "mape": [12.879], "directional_accuracy": None}


def test_ridge_recovers_a_linear_relation_and_selects_on_validation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 3.0
    w, b = scoring.ridge_fit(x, y, alpha=1e-9)
    np.testing.assert_allclose(w[:, 0], [1.0, -2.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(b, [3.0], atol=1e-6)
    alpha, _, _ = scoring.ridge_select(x[:150], y[:150], x[150:], y[150:], (1e-6, 1e6))
    assert alpha == 1e-6
    flat = np.full((50, 1), y[:150].mean())  # validation says the inputs carry nothing: shrink to the mean
    alpha, w, b = scoring.ridge_select(x[:150], y[:150], x[150:], flat, (1e-6, 1e12))
    assert alpha == 1e12 and np.abs(w).max() < 1e-6


def test_diebold_mariano_by_hand():
    t, p = scoring.diebold_mariano(np.array([2.0, 0.0, 2.0, 2.0]), np.array([1.0, 1.0, 1.0, 1.0]), lag=0)
    # d = 1, -1, 1, 1: mean 0.5, variance 0.75, t = 0.5 / sqrt(0.75 / 4)
    assert t == pytest.approx(0.5 / math.sqrt(0.75 / 4))
    assert p == pytest.approx(math.erfc(t / math.sqrt(2)))
    # one Newey-West lag: + 2 * (1 - 1/2) * sum(c[1:] * c[:-1]) / n with c = 0.5, -1.5, 0.5, 0.5
    t1, _ = scoring.diebold_mariano(np.array([2.0, 0.0, 2.0, 2.0]), np.ones(4), lag=1)
    variance = 0.75 + (0.5 * -1.5 + -1.5 * 0.5 + 0.5 * 0.5) / 4
    assert t1 == pytest.approx(0.5 / math.sqrt(variance / 4))
    assert scoring.diebold_mariano(np.ones(5), np.ones(5), lag=2) == (0.0, 1.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    series = datasets.slice_rows(datasets.load_arch("sp500"), 1000, 1600)
    cfg = TrainConfig(input_size=8, hidden_size=8, num_layers=1, num_blocks=2, horizon=3, epochs=2)
    result = train(series, cfg, progress=False)
    path = tmp_path_factory.mktemp("eval") / "tiny.pt"
    torch.save(result.checkpoint, path)
    return series, path, result.checkpoint


def test_evaluation_uses_the_recorded_test_span_and_the_serving_path(trained):
    series, path, checkpoint = trained
    ev = evaluate(path, series)
    meta = checkpoint["metadata"]
    assert ev.spans == meta["spans"] and "recorded" in ev.split_source
    assert ev.offset == 1 and ev.steps == 3 and ev.actual.shape == (meta["spans"]["test"]["samples"], 3)
    # the serving path (Forecaster.forward) reproduces the trainer's own test metrics
    for key in ("mae", "rmse", "mape"):
        np.testing.assert_allclose(ev.scores["model"][key], meta["metrics"]["test"][key], rtol=1e-5)
    # persistence error = the actual move, by hand
    moves = np.abs(ev.current[:, None] * ev.actual)
    np.testing.assert_allclose(ev.scores["persistence"]["mae"], moves.mean(axis=0))
    assert ev.scores["persistence"]["directional_accuracy"] is None
    assert len(ev.tests["model_vs_persistence"]) == 3


def test_report_is_written_with_plots(trained, tmp_path):
    series, path, _ = trained
    ev = evaluate(path, series)
    report = write_report(ev, tmp_path, "tiny", command="python scripts/evaluate.py tiny.pt sp500")
    text = report.read_text()
    assert "| t+1 |" in text and "persistence" in text and "Diebold-Mariano" in text
    for line in verdict(ev):
        assert line in text
    for png in ("tiny_forecast.png", "tiny_by_step.png", "tiny_returns.png"):
        assert (tmp_path / png).stat().st_size > 1000
        assert f"]({png})" in text
    assert (tmp_path / "tiny.json").exists()


def test_other_data_falls_back_to_a_chronological_split(trained):
    _, path, _ = trained
    other = datasets.slice_rows(datasets.load_arch("nasdaq"), 3000, 3400)
    ev = evaluate(path, other)
    assert "70/15/15" in ev.split_source
    assert ev.spans["test"]["end"] <= str(other.dates[-1])
