"""The path engine of a book: joint scenarios of N series, 1 to 250 trading days ahead.

    history (panel: N aligned series, T days, in each series' coordinates y: kinds.py)
    -> daily changes r, filtered by each series' EWMA volatility (lambda 0.94, as the model's):
       standardised residual vectors e_t (N,), demeaned, unit variance: the DEPENDENCE (all
       series of one historical day together, their joint tails and crisis co-movement included)
       and the HEAVY TAILS come from the request's own history, nothing is fitted to fixed assets
    -> paths, day by day: draw a historical day for each path (seeded), r = sigma * e,
       sigma^2 <- omega + alpha r^2 + beta sigma^2 (GARCH(1,1) with the long-run variance of the
       history: VOLATILITY MEAN-REVERTS over months, half-life about 70 days, not sqrt(h))
    -> steps 1..K (the model's): each series' cumulative change is mapped, rank for rank, onto
       the xLSTM's calibrated quantiles (heads.py) at that step (piecewise linear through the
       model's levels, the engine's tails beyond them scaled): the MARGINALS of the first days
       are the model's, the DEPENDENCE the engine's; after step K every path carries its step-K
       mapping forward and adds the engine's increments
    -> per step, without keeping the paths (memory: a few (P, N) arrays): each series' quantiles,
       the book's P&L = sum_i exposure_i x change_i (a price: the simple return since the last
       observation, a level: the difference), its quantiles, VaR and ES (risk.py)

Same inputs and seed, same numbers, bit for bit (numpy's PCG64, float32 paths).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alm_forecaster import risk
from alm_forecaster.forecast import Forecast
from alm_forecaster.kinds import PRICE
from alm_forecaster.panel import Panel

#: The filter of the history (the model's own EWMA decay) and its warm-up days.
EWMA_LAMBDA = 0.94
WARMUP = 20
#: GARCH(1,1) along the path, variance-targeted on the history: persistence 0.99.
ALPHA, BETA = 0.05, 0.94


@dataclass(frozen=True)
class Settings:
    """What a book request asks of the engine (validated by book.py)."""

    paths: int
    horizon: int
    seed: int
    levels: tuple[float, ...]  # quantile levels of each series and of the book's P&L
    risk_levels: tuple[float, ...]
    exposures: np.ndarray  # (N,) P&L per unit of change of each series
    return_paths: bool = False
    #: Map the first steps onto the model's quantiles (False: the same engine without the
    #: xLSTM, the ablation of the book report).
    model_marginals: bool = True


@dataclass(frozen=True)
class Scenarios:
    """Per step h = 1..H: each series' quantiles and median (its own units), the book's."""

    levels: tuple[float, ...]
    risk_levels: tuple[float, ...]
    series: np.ndarray  # (N, H, Q) values at ``levels``
    median: np.ndarray  # (N, H)
    book: np.ndarray  # (H, Q) P&L quantiles
    var: np.ndarray  # (H, R) positive losses
    es: np.ndarray  # (H, R)
    paths: np.ndarray | None  # (P, H, N) changes since the last observation, when asked


def simulate(history: Panel, forecast: Forecast, settings: Settings) -> Scenarios:
    """The book's scenarios: ``forecast`` holds the model's quantiles of every series (all its
    levels, steps 1..K), ``history`` the aligned series they were made from."""
    y = np.stack([kind.coordinates(row) for kind, row in zip(history.kinds, history.values, strict=True)])
    residuals, sigma2, omega = _filter(y)
    anchors = np.array(
        [kind.coordinates(np.array([a]))[0] for kind, a in zip(history.kinds, forecast.anchors, strict=True)]
    )
    model = (
        np.stack([kind.coordinates(q) for kind, q in zip(history.kinds, forecast.quantiles, strict=True)])
        - anchors[:, None, None]
    )  # (N, K, Qm): changes in coordinates
    prices = np.array([kind is PRICE for kind in history.kinds])
    wanted = tuple(sorted({*settings.levels, 0.5}))
    count, steps = len(history), settings.horizon
    out_series = np.empty((count, steps, len(wanted)))
    book = np.empty((steps, len(settings.levels)))
    var = np.empty((steps, len(settings.risk_levels)))
    es = np.empty_like(var)
    paths = np.empty((settings.paths, steps, count), np.float32) if settings.return_paths else None

    rng = np.random.default_rng(settings.seed)
    # Series-major (N, P): every per-series pass (the mapping, the quantiles) reads a contiguous row.
    shocks_of_day = np.ascontiguousarray(residuals.T)  # (N, M)
    sig2 = np.repeat(sigma2.astype(np.float32)[:, None], settings.paths, axis=1)
    cumulative = np.zeros((count, settings.paths), np.float32)
    carried = np.zeros_like(cumulative)  # each path's step-K mapping, carried forward
    alpha, beta, omega = np.float32(ALPHA), np.float32(BETA), omega.astype(np.float32)[:, None]
    exposures = settings.exposures.astype(np.float32)
    for h in range(steps):
        shocks = np.sqrt(sig2) * shocks_of_day[:, rng.integers(0, len(residuals), size=settings.paths)]
        cumulative += shocks
        sig2 = omega + alpha * shocks * shocks + beta * sig2
        if h < model.shape[1] and settings.model_marginals:
            mapped, at_wanted = _onto_model(cumulative, model[:, h], forecast.levels, wanted)
            carried = mapped - cumulative
        else:
            mapped = cumulative + carried
            at_wanted = risk.quantiles(mapped, wanted)
        out_series[:, h] = _values(history, forecast.anchors, at_wanted)
        units = mapped if paths is None and not prices.any() else mapped.copy()
        units[prices] = np.expm1(mapped[prices])
        pnl = (exposures @ units).astype(np.float64)
        book[h], var[h], es[h] = risk.summary(pnl, settings.levels, settings.risk_levels)
        if paths is not None:
            paths[:, h] = units.T
    keep = [wanted.index(level) for level in settings.levels]
    return Scenarios(
        settings.levels,
        settings.risk_levels,
        out_series[:, :, keep],
        out_series[:, :, wanted.index(0.5)],
        book,
        var,
        es,
        paths,
    )


def _filter(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(standardised residual vectors (M, N) float32, next-day variance (N,), omega (N,))."""
    r = np.diff(y, axis=1)  # (N, T-1)
    variance = np.empty_like(r)
    variance[:, 0] = np.mean(r[:, :WARMUP] ** 2, axis=1)
    for t in range(1, r.shape[1]):  # the EWMA forecast of day t's variance, made the day before
        variance[:, t] = EWMA_LAMBDA * variance[:, t - 1] + (1 - EWMA_LAMBDA) * r[:, t - 1] ** 2
    tiny = np.finfo(np.float64).tiny
    e = (r[:, WARMUP:] / np.sqrt(np.maximum(variance[:, WARMUP:], tiny))).T  # (M, N)
    e = (e - e.mean(axis=0)) / np.maximum(e.std(axis=0), tiny)
    following = EWMA_LAMBDA * variance[:, -1] + (1 - EWMA_LAMBDA) * r[:, -1] ** 2
    omega = (1 - ALPHA - BETA) * np.mean(r**2, axis=1)
    return e.astype(np.float32), following, omega


def _onto_model(
    cumulative: np.ndarray, model: np.ndarray, levels: tuple[float, ...], wanted: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Each series' simulated changes (N, P) mapped, rank for rank, onto the model's quantiles
    ``model`` (N, Qm) at ``levels``: piecewise linear through them, beyond the outer levels the
    simulated tail scaled by the model's half-spread over the engine's. Returns the mapped
    changes and their quantiles at ``wanted`` (N, Qw): the map never decreases (the model's
    quantiles do not cross), so a mapped order statistic is the map of the simulated one, read
    from the same partition as the knots rather than from a second one."""
    both = tuple(sorted({*levels, *wanted}))
    order = risk.quantiles(cumulative, both)  # (N, Qm + Qw) order statistics, float32
    knots = order[:, [both.index(level) for level in levels]].astype(np.float64)
    mid = len(levels) // 2
    out = np.empty_like(cumulative)
    at_wanted = np.empty((len(cumulative), len(wanted)), cumulative.dtype)
    columns = [both.index(level) for level in wanted]
    for i in range(len(cumulative)):
        xp = knots[i] + np.arange(len(levels)) * 1e-12  # ties (a discrete history) stay ordered
        fp = model[i]
        low = (fp[mid] - fp[0]) / max(xp[mid] - xp[0], 1e-12)
        high = (fp[-1] - fp[mid]) / max(xp[-1] - xp[mid], 1e-12)
        out[i] = _through(cumulative[i].astype(np.float64), xp, fp, low, high)
        if np.all(np.diff(fp) >= 0):
            at_wanted[i] = _through(order[i, columns].astype(np.float64), xp, fp, low, high)
        else:  # a crossing model (none is served): the mapped values' own order statistics
            at_wanted[i] = risk.quantiles(out[i], wanted)
    return out, at_wanted


def _through(x: np.ndarray, xp: np.ndarray, fp: np.ndarray, low: float, high: float) -> np.ndarray:
    """The map of `_onto_model`: linear through (xp, fp), slopes ``low`` and ``high`` beyond."""
    inner = np.interp(x, xp, fp)
    upper = np.where(x > xp[-1], fp[-1] + (x - xp[-1]) * high, inner)
    return np.where(x < xp[0], fp[0] + (x - xp[0]) * low, upper)


def _values(history: Panel, anchors: np.ndarray, changes: np.ndarray) -> np.ndarray:
    """Changes in coordinates (N, Q) -> values in each series' units."""
    out = np.empty_like(changes, dtype=np.float64)
    for i, kind in enumerate(history.kinds):
        out[i] = kind.values(anchors[i], changes[i].astype(np.float64))
    return out
