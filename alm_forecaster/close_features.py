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
    log_close = np.asarray(y, dtype=np.float64)
    r = np.concatenate([[0.0], np.diff(log_close)])
    sigma = _ewma_sigma(r)
    sigma[:EWMA_WINDOW] = np.nan  # r[0] is a placeholder: sigma needs EWMA_WINDOW real returns
    with np.errstate(divide="ignore", invalid="ignore"):
        z = r / sigma
        columns = [_lag(z, k) for k in range(_LAGS)]
        columns += [np.abs(c) for c in columns]
        for w in _VOL_WINDOWS:
            columns.append(np.log(np.sqrt(_trailing(r**2, w).mean(axis=1)) / sigma))
        for w in _RETURN_WINDOWS:
            columns.append((log_close - _lag(log_close, w)) / (sigma * np.sqrt(w)))
        high = _trailing(log_close, 60).max(axis=1)
        low = _trailing(log_close, 60).min(axis=1)
        columns.append((log_close - high) / (sigma * np.sqrt(60)))
        columns.append((log_close - low) / (sigma * np.sqrt(60)))
    out = np.clip(np.stack(columns, axis=1), -_CLIP, _CLIP)
    out[:LOOKBACK] = np.nan
    return out, sigma


def _ewma_sigma(r: np.ndarray) -> np.ndarray:
    """sqrt(sum_j w_j r_{t-j}^2) with w_j proportional to lambda^j for j < EWMA_WINDOW."""
    weights = EWMA_LAMBDA ** np.arange(EWMA_WINDOW)
    weights /= weights.sum()
    return np.sqrt(_trailing(r**2, EWMA_WINDOW)[:, ::-1] @ weights)


def _trailing(x: np.ndarray, w: int) -> np.ndarray:
    """(n, w): the w values ending at each row, NaN before the series starts."""
    return sliding_window_view(np.concatenate([np.full(w - 1, np.nan), x]), w)


def _lag(x: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate([np.full(k, np.nan), x[: len(x) - k]]) if k else x


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
        recent = panel.last(needed)
        windows: list[Window | None] = [None] * len(panel)
        errors = list(panel.errors)
        for i in np.flatnonzero(panel.usable):
            if panel.lengths[i] < needed:
                errors[i] = InputError(
                    f"{panel.labels[i]}: Not enough data points. Need at least {needed}, got "
                    f"{panel.lengths[i]}{self.why(seq_len, panel.kinds[i].noun)}",
                    reason="too_few_rows",
                )
                continue
            feats, sigma = features(panel.kinds[i].coordinates(recent[i]))
            window = feats[-seq_len:].astype(np.float32)
            scale = float(sigma[-1])
            if not (np.isfinite(window).all() and np.isfinite(scale) and scale > 0):
                errors[i] = InputError(
                    f"{panel.labels[i]}: the last {needed} {panel.kinds[i].noun} do not move (or overflow): their "
                    "volatility is zero or not finite, so no distribution can be scaled from them.",
                    reason="bad_value",
                )
                continue
            windows[i] = Window(embeddings=window, current_price=float(panel.anchors[i]), scale=scale)
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
