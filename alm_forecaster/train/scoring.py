"""Forecast metrics per horizon step, on prices, and the baselines they are compared with.

All functions take predicted and actual SIMPLE RETURNS relative to the window's last price
(shape (m, K): m forecasts, K steps) and that price (m,), and score the implied prices:

    predicted_price = current * (1 + predicted),  actual_price = current * (1 + actual)

- MAE, RMSE: in price units; MAPE: mean |error| / actual price, in percent.
- Directional accuracy: share of forecasts whose predicted move (up/down vs the current
  price) has the sign of the actual move; moves of exactly 0 count as a sign of their own.
  A forecast that never predicts a move (persistence) has no direction: ``None``.
"""

from __future__ import annotations

import math

import numpy as np


def horizon_metrics(predicted: np.ndarray, actual: np.ndarray, current: np.ndarray) -> dict[str, np.ndarray | None]:
    """Per-step MAE, RMSE, MAPE (%) and directional accuracy (%), each an array of K values."""
    predicted, actual = np.atleast_2d(predicted), np.atleast_2d(actual)
    current = np.asarray(current, dtype=np.float64)[:, None]
    predicted_price = current * (1.0 + predicted)
    actual_price = current * (1.0 + actual)
    error = predicted_price - actual_price
    direction = None
    if np.any(predicted != 0):
        direction = 100.0 * (np.sign(predicted) == np.sign(actual)).mean(axis=0)
    return {
        "mae": np.abs(error).mean(axis=0),
        "rmse": np.sqrt((error**2).mean(axis=0)),
        "mape": 100.0 * (np.abs(error) / actual_price).mean(axis=0),
        "directional_accuracy": direction,
    }


def summary(metrics: dict, digits: int = 6) -> dict:
    """Plain lists (checkpoint metadata, JSON): rounded, ``None`` kept."""
    return {
        name: None if values is None else [round(float(v), digits) for v in values] for name, values in metrics.items()
    }


def up_share(actual: np.ndarray) -> np.ndarray:
    """Per step, % of actual moves that were up: the accuracy of always predicting 'up'."""
    return 100.0 * (np.atleast_2d(actual) > 0).mean(axis=0)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised intercept: returns (weights (F, K), intercept (K,))."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - x_mean, y - y_mean
    gram = xc.T @ xc + alpha * np.eye(x.shape[1])
    weights = np.linalg.solve(gram, xc.T @ yc)
    return weights, y_mean - x_mean @ weights


def ridge_select(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, alphas: tuple[float, ...]
) -> tuple[float, np.ndarray, np.ndarray]:
    """The alpha with the lowest validation MSE (ties: the larger alpha), refitted on train."""
    best = None
    for alpha in sorted(alphas, reverse=True):
        w, b = ridge_fit(x_train, y_train, alpha)
        mse = float(((x_val @ w + b - y_val) ** 2).mean())
        if best is None or mse < best[0]:
            best = (mse, alpha, w, b)
    return best[1], best[2], best[3]


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, lag: int) -> tuple[float, float]:
    """DM test of equal expected loss: t statistic (negative: ``a`` has the lower loss) and
    two-sided p-value (normal approximation), Newey-West variance with ``lag`` lags (use
    steps ahead - 1 for overlapping multi-step forecasts)."""
    d = np.asarray(loss_a, dtype=np.float64) - np.asarray(loss_b, dtype=np.float64)
    n = len(d)
    centred = d - d.mean()
    variance = centred @ centred / n
    for j in range(1, lag + 1):
        variance += 2.0 * (1.0 - j / (lag + 1)) * (centred[j:] @ centred[:-j]) / n
    if variance <= 0:
        return 0.0, 1.0
    t = d.mean() / math.sqrt(variance / n)
    return float(t), float(math.erfc(abs(t) / math.sqrt(2.0)))
