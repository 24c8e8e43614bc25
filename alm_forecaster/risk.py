"""Risk summaries of simulated outcomes: quantiles by order statistics, value at risk, expected shortfall.

    values (P,) or (N, P) along the paths
    -> quantile at level q: the order statistic of rank round(q (P - 1)) (nearest rank: one
       np.partition for every level at once, the cost that bounds a long horizon)
    -> VaR at risk level a: the loss at the (1 - a) quantile of the P&L, as a positive number
    -> ES at risk level a: the mean loss of the paths at or beyond that quantile

Used by the scenario engine (scenarios.py) per step: each series' quantiles and the book's.
"""

from __future__ import annotations

import numpy as np


def ranks(levels: np.ndarray | list[float], paths: int) -> np.ndarray:
    """The order statistic (0-based) that is each level's quantile among ``paths`` values."""
    return np.rint(np.asarray(levels, dtype=np.float64) * (paths - 1)).astype(np.int64)


#: Up to this many paths, a full sort finds three or more order statistics faster than a
#: partition does (numpy's vectorised sort against its introselect, about 30% at 10,000 paths;
#: beyond 20,000 the partition wins). The values are the same either way.
SORT_UP_TO = 20_000


def quantiles(values: np.ndarray, levels: np.ndarray | list[float]) -> np.ndarray:
    """Quantiles along the last axis: (..., P) -> (..., len(levels))."""
    k = ranks(levels, values.shape[-1])
    kth = np.unique(k)
    if len(kth) >= 3 and values.shape[-1] <= SORT_UP_TO:
        return np.sort(values, axis=-1)[..., k]
    return np.partition(values, kth, axis=-1)[..., k]


def summary(
    pnl: np.ndarray, levels: tuple[float, ...], risk_levels: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(quantiles at ``levels``, VaR, ES at ``risk_levels``) of a P&L sample (P,), from one
    partition of it."""
    tails = 1.0 - np.asarray(risk_levels, dtype=np.float64)
    k, t = ranks(levels, len(pnl)), ranks(tails, len(pnl))
    ordered = np.partition(pnl, np.unique(np.concatenate([k, t])))
    es = np.array([ordered[: i + 1].mean() for i in t])
    return ordered[k], -ordered[t], -es


def var_es(pnl: np.ndarray, risk_levels: np.ndarray | list[float]) -> tuple[np.ndarray, np.ndarray]:
    """(VaR, ES) of a P&L sample (P,) at each risk level (0.99: the 1% worst): positive losses."""
    tails = 1.0 - np.asarray(risk_levels, dtype=np.float64)
    k = ranks(tails, len(pnl))
    ordered = np.partition(pnl, np.unique(k))
    cut = ordered[k]
    # ES: the mean of the outcomes at or below the VaR quantile (the k + 1 worst, a partition's
    # prefix is exactly them)
    es = np.array([ordered[: i + 1].mean() for i in k])
    return -cut, -es
