"""Standardised changes, the unit every quantile model predicts in, written once.

    z[t, h] = (y[t + h] - y[t]) / (sigma_t * sqrt(h))        y: a series' additive coordinates (kinds.py)
    change  = z * sigma_t * sqrt(h)                          and back

``sigma_t`` is the window's daily volatility of changes in y (`close_features`): over h days a
random walk's spread grows like sqrt(h), so a standardised change has about the same spread at
every step and on every series. Training targets, served quantiles and the filtered
historical-simulation baseline all go through these two functions.
"""

from __future__ import annotations

import numpy as np


def horizon_scale(sigma: np.ndarray, steps: int) -> np.ndarray:
    """(B, steps): sigma_b * sqrt(h) for h = 1..steps."""
    return np.asarray(sigma, dtype=np.float64)[:, None] * np.sqrt(np.arange(1, steps + 1))[None, :]


def changes(z: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Standardised quantiles z (B, K, Q) of windows with volatility ``sigma`` (B,) -> changes in y."""
    return z * horizon_scale(sigma, z.shape[1])[..., None]


def standardised_changes(y: np.ndarray, sigma: np.ndarray, horizon: int) -> np.ndarray:
    """(n, horizon): z[t, h] of the coordinates y (n,) and their volatility sigma (n,); NaN where
    y[t + h] is not known."""
    n = len(y)
    out = np.full((n, horizon), np.nan)
    for h in range(1, horizon + 1):
        out[: n - h, h - 1] = (y[h:] - y[: n - h]) / (sigma[: n - h] * np.sqrt(h))
    return out
