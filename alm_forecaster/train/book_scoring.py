"""Scores of a book's forecasts: VaR violations, the Basel traffic light per window, the
Acerbi-Szekely ES test, pinball over many levels, energy and variogram scores, Diebold-Mariano.

The univariate VaR tests (Kupiec, Christoffersen, Basel's binomial cut-offs) are
distribution_scoring.py's; the multivariate scores are ``scoringrules``' (a development
dependency: requirements-dev.txt).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from alm_forecaster.train import distribution_scoring

#: The book's P&L quantile levels scored by pinball: 0.01, 0.02, ..., 0.99.
LEVELS = tuple(round(0.01 * i, 2) for i in range(1, 100))
#: Members of an ensemble the energy score reads (a systematic subsample: the "fair" estimator
#: is unbiased for any size; its cost grows with the square).
ENERGY_MEMBERS = 300


def violations(pnl: np.ndarray, var: np.ndarray) -> np.ndarray:
    """A violation: the realised P&L below minus the VaR (a loss larger than the VaR)."""
    return pnl < -var


def var_tests(hits: np.ndarray, tail: float) -> dict:
    """Violations, their rate, Kupiec's and Christoffersen's p-values at tail probability ``tail``."""
    kupiec = distribution_scoring.kupiec(hits, tail)
    christoffersen = distribution_scoring.christoffersen(hits)
    return {
        "n": len(hits),
        "violations": int(hits.sum()),
        "expected": len(hits) * tail,
        "rate": float(hits.mean()),
        "kupiec_p": kupiec[1],
        "christoffersen_p": christoffersen[1],
    }


def basel_windows(hits: np.ndarray, per_window: int, tail: float = 0.01) -> list[dict]:
    """Basel's traffic light on consecutive non-overlapping windows of ``per_window``
    observations (the last one kept when at least half full): green while the binomial
    probability of at most that many exceptions is below 95%, red from 99.99%; no exception is
    green whatever the window's size."""
    out = []
    for start in range(0, len(hits), per_window):
        window = hits[start : start + per_window]
        if len(window) * 2 < per_window and out:
            break
        zone, exceptions = distribution_scoring.basel_zone(window, tail, window=len(window))
        if exceptions == 0:  # below 5 observations at 1% even none is "yellow" by the cut-off alone
            zone = "green"
        out.append({"first": start, "n": len(window), "exceptions": exceptions, "zone": zone})
    return out


def acerbi_szekely_z2(pnl: np.ndarray, var: np.ndarray, es: np.ndarray, tail: float) -> float:
    """Acerbi and Szekely's (2014) Z2: sum_t X_t I_t / (T tail ES_t) + 1, X the P&L, I the VaR
    violations, VaR and ES positive losses. 0 when the ES is right; negative when the tail
    losses are larger than forecast."""
    hits = violations(pnl, var)
    return float(np.sum(pnl * hits / es) / (len(pnl) * tail) + 1.0)


def z2_test(
    pnl: np.ndarray,
    var: np.ndarray,
    es: np.ndarray,
    tail: float,
    samples: np.ndarray,
    rng: np.random.Generator,
    draws: int = 2000,
) -> dict:
    """Z2 and its p-value under the forecasts themselves: ``draws`` times, each origin's P&L is
    drawn from its own forecast sample (``samples`` (T, G)); the p-value is the share of
    simulated Z2 at or below the realised one, the critical value the 5% quantile."""
    z2 = acerbi_szekely_z2(pnl, var, es, tail)
    picks = samples[np.arange(len(pnl))[:, None], rng.integers(0, samples.shape[1], size=(len(pnl), draws))]
    simulated = np.sum(picks * (picks < -var[:, None]) / es[:, None], axis=0) / (len(pnl) * tail) + 1.0
    return {"z2": z2, "p": float(np.mean(simulated <= z2)), "critical_5pct": float(np.quantile(simulated, 0.05))}


def pinball(y: np.ndarray, q: np.ndarray, levels: tuple[float, ...] = LEVELS) -> np.ndarray:
    """Per origin, the pinball loss of quantiles q (n, L) at ``levels`` for outcomes y (n,),
    averaged over the levels."""
    d = y[:, None] - q
    tau = np.asarray(levels)
    return np.mean(np.maximum(tau * d, (tau - 1) * d), axis=1)


def subsample(draws: np.ndarray, members: int = ENERGY_MEMBERS) -> np.ndarray:
    """Every (M / members)-th member: a systematic subsample (for draws ordered in time, as
    historical simulation's are, it spans the whole history)."""
    if len(draws) <= members:
        return draws
    return draws[np.linspace(0, len(draws) - 1, members).round().astype(np.int64)]


def energy(obs: np.ndarray, draws: np.ndarray) -> float:
    """Energy score of the ensemble ``draws`` (M, N) for the outcome ``obs`` (N,) (scoringrules,
    the fair estimator on a systematic subsample of ENERGY_MEMBERS)."""
    import scoringrules as sr

    return float(sr.es_ensemble(obs, subsample(draws), estimator="fair", backend="numpy"))


def variogram(obs: np.ndarray, draws: np.ndarray, p: float = 0.5) -> float:
    """Variogram score of order ``p`` (scoringrules; every member): how well the ensemble's
    pairwise differences |x_i - x_j|^p match the outcome's, i.e. its dependence."""
    import scoringrules as sr

    return float(sr.vs_ensemble(obs, draws, p=p, backend="numpy"))


def mean_pairwise_correlation(x: np.ndarray) -> float:
    """The average off-diagonal correlation of the columns of ``x`` (M, N) (NaN when N < 2 or
    a column does not move)."""
    if x.shape[1] < 2 or len(x) < 3:
        return math.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.corrcoef(x.T)
    return float(np.nanmean(c[~np.eye(len(c), dtype=bool)])) if np.isfinite(c).any() else math.nan


def effective_sample(origins: int, every: int, horizon: int) -> float:
    """Non-overlapping windows' worth of ``origins`` h-day outcomes spaced ``every`` days."""
    return origins * min(1.0, every / horizon)


def diebold_mariano(a: np.ndarray, b: np.ndarray, lags: int) -> dict:
    """Mean loss difference a - b, its Newey-West t statistic (``lags`` Bartlett lags: the
    overlap of the windows) and two-sided p-value (normal)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 3:
        return {"mean": math.nan, "t": math.nan, "p": math.nan}
    u = d - d.mean()
    variance = np.dot(u, u) / n
    for lag in range(1, min(lags, n - 1) + 1):
        variance += 2 * (1 - lag / (lags + 1)) * np.dot(u[lag:], u[:-lag]) / n
    t = d.mean() / math.sqrt(variance / n) if variance > 0 else math.nan
    return {"mean": float(d.mean()), "t": float(t), "p": float(2 * stats.norm.sf(abs(t))) if t == t else math.nan}
