"""Scores of quantile forecasts: pinball, coverage, Winkler, VaR backtests (Kupiec, Christoffersen, Basel)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def pinball(y: np.ndarray, q: np.ndarray, level: float) -> float:
    """Mean pinball (quantile) loss of forecasts q for outcomes y at one level."""
    d = y - q
    return float(np.mean(np.maximum(level * d, (level - 1) * d)))


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    return float(np.mean((y >= lo) & (y <= hi)))


def winkler(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, alpha: float) -> float:
    """Interval score of the central (1 - alpha) interval: width + 2/alpha * miss distance."""
    width = hi - lo
    below = np.where(y < lo, lo - y, 0.0)
    above = np.where(y > hi, y - hi, 0.0)
    return float(np.mean(width + 2.0 / alpha * (below + above)))


def kupiec(hits: np.ndarray, p: float) -> tuple[float, float]:
    """Proportion-of-failures LR statistic and p-value (chi2, 1 dof)."""
    n, x = len(hits), int(hits.sum())
    phat = x / n
    ll0 = (n - x) * math.log(1 - p) + x * math.log(p)
    ll1 = (n - x) * math.log(1 - phat) if phat < 1 else 0.0
    ll1 += x * math.log(phat) if phat > 0 else 0.0
    lr = -2 * (ll0 - ll1)
    return lr, float(stats.chi2.sf(lr, 1))


def christoffersen(hits: np.ndarray) -> tuple[float, float]:
    """Independence LR statistic and p-value: is a violation more likely after a violation?"""
    h = hits.astype(int)
    prev, cur = h[:-1], h[1:]
    n00 = int(np.sum((prev == 0) & (cur == 0)))
    n01 = int(np.sum((prev == 0) & (cur == 1)))
    n10 = int(np.sum((prev == 1) & (cur == 0)))
    n11 = int(np.sum((prev == 1) & (cur == 1)))

    def ll(a: int, b: int, p: float) -> float:
        return (a * math.log(1 - p) if a else 0.0) + (b * math.log(p) if b else 0.0)

    p01 = n01 / max(n00 + n01, 1)
    p11 = n11 / max(n10 + n11, 1)
    p = (n01 + n11) / max(n00 + n01 + n10 + n11, 1)
    lr = -2 * (ll(n00 + n10, n01 + n11, p) - ll(n00, n01, p01) - ll(n10, n11, p11))
    return lr, float(stats.chi2.sf(lr, 1))


def basel_zone(hits: np.ndarray, p: float, window: int = 250) -> tuple[str, int]:
    """Traffic light of the last ``window`` days: green while the binomial probability of at
    most that many exceptions is below 95%, red from 99.99% (Basel's cut-offs, any level p)."""
    x = int(hits[-window:].sum())
    cdf = stats.binom.cdf(x, min(window, len(hits)), p)
    return ("green" if cdf < 0.95 else "yellow" if cdf < 0.9999 else "red"), x
