"""Joint baselines of a book: what a risk team would run instead of the path engine.

Each takes the history an origin sees (y: (T, N) additive coordinates, kinds.py: log prices,
levels as they are; nothing after the origin) and returns, per horizon h, draws (M, N) of the
N series' changes over the next h days in units (a price: its simple return, a level: its
difference), the form the engine's paths have (scenarios.py):

* ``historical``: multivariate historical simulation, every same-date vector of h-day changes
  in the history (T - h of them, overlapping);
* ``filtered_hs``: multivariate filtered historical simulation on each series' EWMA volatility
  (lambda 0.94, the engine's filter): same-date residual vectors bootstrapped day by day,
  scaled by today's volatility held flat (no mean reversion);
* ``ccc_garch_t``: constant-correlation GARCH(1,1) (Bollerslev): ``arch`` fits GARCH(1,1) with
  a constant mean and Student-t innovations per series; the correlation of the standardised
  residuals; paths with multivariate Student-t innovations (one degree of freedom, the median
  of the series' fitted ones, so the correlation is exactly the residuals') and each series'
  GARCH recursion along the path.

The engine's own marginals with independent paths (each series simulated alone, its own dates
drawn) and the engine without the model's marginals are run by book_backtest.py with
scenarios.simulate itself.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: The engine's filter (scenarios.py): EWMA decay and warm-up days.
EWMA_LAMBDA = 0.94
WARMUP = 20
#: Bounds of the common degree of freedom of the GARCH's multivariate t.
NU_RANGE = (2.5, 100.0)


def units(changes: np.ndarray, prices: np.ndarray) -> np.ndarray:
    """Changes in coordinates (..., N) -> simple returns for prices, differences for levels."""
    return np.where(prices, np.expm1(changes), changes)


def historical(y: np.ndarray, horizons: tuple[int, ...], prices: np.ndarray) -> list[np.ndarray | None]:
    """Per horizon, every same-date vector of h-day changes in the history (None: too short)."""
    return [units(y[h:] - y[:-h], prices) if len(y) > h + 1 else None for h in horizons]


def ewma_variance(r: np.ndarray) -> np.ndarray:
    """(T, N): the EWMA forecast of each day's variance of the changes ``r`` (T, N), made the
    day before (the first WARMUP days' mean square starts it)."""
    variance = np.empty_like(r)
    variance[0] = np.mean(r[:WARMUP] ** 2, axis=0)
    for t in range(1, len(r)):
        variance[t] = EWMA_LAMBDA * variance[t - 1] + (1 - EWMA_LAMBDA) * r[t - 1] ** 2
    return variance


def ewma_residuals(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(same-date residual vectors (M, N): each day's changes over their EWMA volatility
    forecast, demeaned, unit variance; the next day's volatility (N,))."""
    r = np.diff(y, axis=0)
    variance = ewma_variance(r)
    tiny = np.finfo(np.float64).tiny
    e = r[WARMUP:] / np.sqrt(np.maximum(variance[WARMUP:], tiny))
    e = (e - e.mean(axis=0)) / np.maximum(e.std(axis=0), tiny)
    following = EWMA_LAMBDA * variance[-1] + (1 - EWMA_LAMBDA) * r[-1] ** 2
    return e, np.sqrt(following)


def filtered_hs(
    y: np.ndarray, horizons: tuple[int, ...], prices: np.ndarray, paths: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Per horizon, ``paths`` draws: sums of h bootstrapped residual vectors times today's
    EWMA volatility."""
    e, sigma = ewma_residuals(y)
    cumulative = np.zeros((paths, y.shape[1]))
    out, wanted = [], set(horizons)
    for h in range(1, max(horizons) + 1):
        cumulative += e[rng.integers(0, len(e), size=paths)] * sigma
        if h in wanted:
            out.append(units(cumulative, prices))
    return [out[sorted(wanted).index(h)] for h in horizons]


@dataclass(frozen=True)
class Garch:
    """Per series GARCH(1,1)-t parameters (in hundredths of a change: percent of a log return,
    basis points of a yield in percent)."""

    mu: np.ndarray
    omega: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    nu: np.ndarray


def fit_garch(y: np.ndarray) -> Garch:
    """``arch``'s GARCH(1,1), constant mean, Student-t, fitted on each series' daily changes."""
    from arch import arch_model

    r = 100 * np.diff(y, axis=0)
    fitted = []
    for i in range(r.shape[1]):
        model = arch_model(r[:, i], mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted.append(model.fit(disp="off", show_warning=False).params)
    keys = ("mu", "omega", "alpha[1]", "beta[1]", "nu")
    return Garch(*(np.array([p[k] for p in fitted], dtype=np.float64) for k in keys))


def garch_filter(y: np.ndarray, g: Garch) -> tuple[np.ndarray, np.ndarray]:
    """(standardised residuals (T-1, N), next day's variance (N,)) of the history under ``g``
    (the recursion started at the sample variance, as arch's backcast does roughly)."""
    r = 100 * np.diff(y, axis=0) - g.mu
    variance = np.empty_like(r)
    variance[0] = np.mean(r**2, axis=0)
    for t in range(1, len(r)):
        variance[t] = g.omega + g.alpha * r[t - 1] ** 2 + g.beta * variance[t - 1]
    following = g.omega + g.alpha * r[-1] ** 2 + g.beta * variance[-1]
    return r / np.sqrt(variance), following


def ccc_garch_t(
    y: np.ndarray,
    horizons: tuple[int, ...],
    prices: np.ndarray,
    paths: int,
    rng: np.random.Generator,
    g: Garch | None = None,
) -> tuple[list[np.ndarray], Garch]:
    """Per horizon, ``paths`` draws of the constant-correlation GARCH(1,1)-t; ``g``: parameters
    already fitted (refitted here when None). Returns the draws and the parameters."""
    g = g if g is not None else fit_garch(y)
    z, variance = garch_filter(y, g)
    correlation = np.corrcoef(z.T) if y.shape[1] > 1 else np.ones((1, 1))
    lower = np.linalg.cholesky(correlation + 1e-10 * np.eye(len(correlation)))
    nu = float(np.clip(np.median(g.nu), *NU_RANGE))
    scale = np.sqrt((nu - 2.0) / nu)
    sig2 = np.broadcast_to(variance, (paths, y.shape[1])).copy()
    cumulative = np.zeros_like(sig2)
    out, wanted = {}, set(horizons)
    steps = max(horizons)
    # one product for every step (a small matrix product per step costs BLAS's start-up each time)
    normal = (rng.standard_normal((steps * paths, y.shape[1])) @ lower.T).reshape(steps, paths, -1)
    mixing = scale * np.sqrt(nu / rng.chisquare(nu, size=(steps, paths, 1)))
    for h in range(1, steps + 1):
        eps = normal[h - 1] * mixing[h - 1]
        shock = np.sqrt(sig2) * eps
        cumulative += g.mu + shock
        sig2 = g.omega + g.alpha * shock**2 + g.beta * sig2
        if h in wanted:
            out[h] = units(cumulative / 100, prices)
    return [out[h] for h in horizons], g
