"""Features of one value a day, for models that forecast distributions of any series.

    y (n,): a series' additive coordinates (kinds.py: log prices) -> changes -> sigma_t (windowed
                   EWMA volatility of the changes)
                -> 19 scale-free features per day: standardised returns and their sizes over
                   the last 5 days, volatility ratios (5/20/60/250 days over sigma_t),
                   standardised 5/20/60-day returns, distance to the 60-day high and low

Every feature is divided by the series' own volatility, so a rate, an FX pair, an oil price
and an equity index look alike to the network: what it learns on two series it can apply to
others. ``sigma_t`` is also what the quantiles are scaled by: the network predicts standardised
quantiles of ``(y[t + h] - y[t]) / (sigma_t * sqrt(h))`` (`scaling.py`).

Causal with a finite lookback: day t reads closes t - LOOKBACK .. t only (the EWMA weights are
cut at 250 returns and renormalised), so a day's features are the same whether they are
computed from a request's rows or from decades of training data. A request needs
``LOOKBACK + seq_len`` rows (274 for 20-day windows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from alm_forecaster.contract import Window, Windows
from alm_forecaster.errors import CheckpointError, InputError
from alm_forecaster.panel import Panel

KIND = "close_v1"
EWMA_LAMBDA = 0.94
#: Returns the EWMA volatility reads (its weights are cut there and renormalised); also the
#: longest volatility window.
EWMA_WINDOW = 250
_VOL_WINDOWS = (5, 20, 60, 250)
_RETURN_WINDOWS = (5, 20, 60)
_LAGS = 5
#: Closes before day t that its features read: sigma of day t - 4 (the oldest standardised
#: lag) reads the 250 returns before it, i.e. closes t - 254 .. t - 4.
LOOKBACK = EWMA_WINDOW + _LAGS - 1
_CLIP = 10.0
FEATURE_NAMES = (
    [f"z_lag{k}" for k in range(_LAGS)]
    + [f"abs_z_lag{k}" for k in range(_LAGS)]
    + [f"log_vol{w}_over_sigma" for w in _VOL_WINDOWS]
    + [f"return{w}_z" for w in _RETURN_WINDOWS]
    + ["from_high60_z", "from_low60_z"]
)


def features(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, F), sigma (n,)) of the coordinates y (n,); the first LOOKBACK rows are NaN."""
    feats, sigma = panel_features(np.asarray(y, dtype=np.float64)[None, :])
    return feats[0], sigma[0]


def panel_features(y: np.ndarray, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, R, F), sigma (N, R)) of the coordinates y (N, T) of N series at once, at
    their last R = ``last`` rows (all T rows: None): a request's windows read 20 rows, so only
    those are computed, for every series of the batch in one pass of array operations."""
    y = np.asarray(y, dtype=np.float64)
    n, t = y.shape
    rows = t if last is None else min(last, t)
    pad = np.full((n, EWMA_WINDOW + _LAGS), np.nan)  # every window reads real values or NaN
    padded = np.concatenate([pad, y], axis=1)
    r = np.concatenate([pad, np.zeros((n, 1)), np.diff(y, axis=1)], axis=1)  # r of day 0: a placeholder
    squares = r**2
    reach = rows + _LAGS - 1  # sigma of the oldest lag of the first row (before day 0: NaN)
    sigma_reach = _ewma_sigma(squares, reach)
    sigma_reach[:, : max(0, EWMA_WINDOW - (t - reach))] = np.nan  # sigma needs EWMA_WINDOW real returns
    sigma = sigma_reach[:, reach - rows :]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = r[:, r.shape[1] - reach :] / sigma_reach
        columns = [_tail(z, rows, k) for k in range(_LAGS)]
        columns += [np.abs(c) for c in columns]
        for w in _VOL_WINDOWS:
            columns.append(np.log(np.sqrt(_windows(squares, w, rows).mean(axis=2)) / sigma))
        now = padded[:, padded.shape[1] - rows :]
        for w in _RETURN_WINDOWS:
            columns.append((now - _tail(padded, rows, w)) / (sigma * np.sqrt(w)))
        high = _windows(padded, 60, rows).max(axis=2)
        low = _windows(padded, 60, rows).min(axis=2)
        columns.append((now - high) / (sigma * np.sqrt(60)))
        columns.append((now - low) / (sigma * np.sqrt(60)))
    out = np.clip(np.stack(columns, axis=2), -_CLIP, _CLIP)
    out[:, : max(0, LOOKBACK - (t - rows))] = np.nan
    return out, sigma


def _ewma_sigma(squares: np.ndarray, rows: int) -> np.ndarray:
    """(N, rows): sqrt(sum_j w_j r_{t-j}^2), w_j proportional to lambda^j for j < EWMA_WINDOW, at
    the last ``rows`` days."""
    weights = EWMA_LAMBDA ** np.arange(EWMA_WINDOW)
    weights /= weights.sum()
    return np.sqrt(_windows(squares, EWMA_WINDOW, rows)[:, :, ::-1] @ weights)


def _windows(x: np.ndarray, w: int, rows: int) -> np.ndarray:
    """(N, rows, w): the w values ending at each of the last ``rows`` columns of x (N, T')."""
    return sliding_window_view(x, w, axis=1)[:, -rows:, :]


def _tail(x: np.ndarray, rows: int, lag: int) -> np.ndarray:
    """(N, rows): x's last ``rows`` columns, ``lag`` columns earlier."""
    end = x.shape[1] - lag
    return x[:, end - rows : end]


@dataclass(frozen=True)
class ClosePipeline:
    """The serving side of `features`: a panel of series -> each series' model window and sigma.

    It has no fitted state (every feature is already scale-free); the checkpoint records the
    kind, the feature names and the lookback so that a model is only served by the code that
    computes exactly its features.
    """

    lookback: int = LOOKBACK

    @property
    def output_size(self) -> int:
        return len(FEATURE_NAMES)

    def rows_needed(self, seq_len: int) -> int:
        return self.lookback + seq_len

    def why(self, seq_len: int, noun: str = "prices") -> str:
        """Why a request needs `rows_needed` values (appended to the too-few-rows message)."""
        needed = self.rows_needed(seq_len)
        return (
            f" daily {noun}: each of the model's {seq_len} window days needs the {self.lookback} days before it "
            f"for its features ({self.lookback} + {seq_len} = {needed})."
        )

    def windows(self, panel: Panel, seq_len: int) -> Windows:
        """Each series' window (from its last `rows_needed` values), or the error that refuses it."""
        needed = self.rows_needed(seq_len)
        windows: list[Window | None] = [None] * len(panel)
        errors = list(panel.errors)
        for i in np.flatnonzero(panel.usable & (panel.lengths < needed)):
            errors[i] = InputError(
                f"{panel.labels[i]}: Not enough data points. Need at least {needed}, got "
                f"{panel.lengths[i]}{self.why(seq_len, panel.kinds[i].noun)}",
                reason="too_few_rows",
            )
        ready = np.flatnonzero(panel.usable & (panel.lengths >= needed))
        if not len(ready):
            return windows, errors
        recent = panel.last(needed)[ready]
        y = np.empty_like(recent)
        for kind in set(panel.kinds[i] for i in ready):  # each kind's coordinates, a group at a time
            rows = np.array([panel.kinds[i] is kind for i in ready])
            y[rows] = kind.coordinates(recent[rows])
        feats, sigma = panel_features(y, last=seq_len)  # every series of the request at once
        feats = feats.astype(np.float32)
        scales = sigma[:, -1]
        usable = np.isfinite(feats).all(axis=(1, 2)) & np.isfinite(scales) & (scales > 0)
        for row, i in enumerate(ready):
            if usable[row]:
                windows[i] = Window(
                    embeddings=feats[row], current_price=float(panel.anchors[i]), scale=float(scales[row])
                )
            else:
                errors[i] = InputError(
                    f"{panel.labels[i]}: the last {needed} {panel.kinds[i].noun} do not move (or overflow): their "
                    "volatility is zero or not finite, so no distribution can be scaled from them.",
                    reason="bad_value",
                )
        return windows, errors

    def state(self) -> dict:
        return {"kind": KIND, "feature_names": list(FEATURE_NAMES), "lookback": self.lookback}

    @classmethod
    def from_state(cls, state: dict) -> ClosePipeline:
        if state.get("feature_names") != FEATURE_NAMES or state.get("lookback") != LOOKBACK:
            raise CheckpointError(
                f"feature_pipeline: a {KIND} pipeline with other features or lookback than this code's "
                f"({len(FEATURE_NAMES)} features, lookback {LOOKBACK}); the model needs the code it was trained with."
            )
        return cls()
