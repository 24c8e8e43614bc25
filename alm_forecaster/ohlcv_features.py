"""Feature pipeline: raw daily OHLCV prices -> technical features -> standardised PCA embeddings.

One implementation, used by training (`training.py`), evaluation and serving
(`Forecaster.parse` -> `FeaturePipeline.window`).

Features (`technical_features`, names in `FEATURE_NAMES`): log returns over 1..60 days, lagged
daily returns, realised and Parkinson volatility, volatility ratios, moving-average ratios,
MACD (12/26/9), RSI (7/14/28), Bollinger position and width (20/40), ATR (5/14), stochastic
position, distance to recent highs/lows, candle shape and gaps, volume features, return
skewness/kurtosis and calendar features. Every feature is scale-free (a ratio or log ratio of
prices, or of volumes), so a stock split or a different price level changes nothing.

Causality and a finite lookback: the feature row of day t reads days ``t - LOOKBACK .. t``
only, never later ones. The MACD's exponential averages are *windowed* (the EMA weights cut
at a fixed length and renormalised) so that no feature depends on the whole history: a day's
embedding is the same whether it is computed from 80 rows of a request or from 20 years of
training data. A request therefore needs ``LOOKBACK + seq_len`` rows.

The fitted state (feature names, scaler mean/std, clip, PCA mean, components and whitening
scale) is stored in the checkpoint's ``feature_pipeline`` as tensors and plain values, so the
checkpoint still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided

from alm_forecaster import ohlcv
from alm_forecaster.contract import Window, require_rows
from alm_forecaster.errors import CheckpointError, InputError
from alm_forecaster.ohlcv import OHLCV
from alm_forecaster.table import Table

KIND = "ohlcv_technical_v1"
OHLCV_COLUMNS = ohlcv.REQUIRED

#: Rows before day t that its features read (the longest window: 60-day return and volatility).
LOOKBACK = 60

_RETURN_WINDOWS = (1, 2, 3, 5, 10, 20, 40, 60)
_LAGS = (1, 2, 3, 4, 5)
_VOL_WINDOWS = (5, 10, 20, 40, 60)
_MA_WINDOWS = (5, 10, 20, 40, 60)
_RSI_WINDOWS = (7, 14, 28)
# Windowed EMA lengths (rows): weight (1 - alpha)^j for j < length, renormalised.
_EMA_FAST, _EMA_SLOW, _EMA_SIGNAL = (12, 30), (26, 40), (9, 18)


def looks_like_ohlcv(header: list[str]) -> bool:
    """A table meant as raw prices: no embedding columns and at least two OHLCV column names
    (any case), so that a file missing some of them gets the OHLCV error naming them."""
    names = {ohlcv.normalise_name(name) for name in header}
    if any(name.strip().lower().startswith("emb_") for name in header):
        return False
    return len(names & set(OHLCV_COLUMNS)) >= 2


# --------------------------------------------------------------------------- features


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    """Right-align ``values`` in a length-n array, NaN in front."""
    out = np.full(n, np.nan)
    if len(values):
        out[n - len(values) :] = values
    return out


def _windows(x: np.ndarray, w: int) -> np.ndarray:
    """(n - w + 1, w) view of every trailing window of length w (empty when too short)."""
    if len(x) < w:
        return np.empty((0, w))
    x = np.ascontiguousarray(x)
    return as_strided(x, (len(x) - w + 1, w), (x.strides[0], x.strides[0]), writeable=False)


def _mean(x: np.ndarray, w: int) -> np.ndarray:
    return _pad(_windows(x, w).mean(axis=1), len(x))


def _std(x: np.ndarray, w: int) -> np.ndarray:
    return _pad(_windows(x, w).std(axis=1), len(x))


def _max(x: np.ndarray, w: int) -> np.ndarray:
    return _pad(_windows(x, w).max(axis=1), len(x))


def _min(x: np.ndarray, w: int) -> np.ndarray:
    return _pad(_windows(x, w).min(axis=1), len(x))


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def _windowed_ema(x: np.ndarray, span: int, length: int) -> np.ndarray:
    """EMA with weights cut at ``length`` rows and renormalised (finite lookback length - 1)."""
    alpha = 2.0 / (span + 1.0)
    weights = (1.0 - alpha) ** np.arange(length - 1, -1, -1, dtype=np.float64)
    weights /= weights.sum()
    return _pad(_windows(x, length) @ weights, len(x))


def _ratio(num: np.ndarray, den: np.ndarray, default: float = 0.0) -> np.ndarray:
    """num / den, ``default`` where den is 0 (flat prices, zero volume); NaN stays NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where(den == 0, default, out)


def _moments(r: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    win = _windows(r, w)
    d = win - win.mean(axis=1, keepdims=True)
    m2 = (d**2).mean(axis=1)
    skew = _ratio((d**3).mean(axis=1), m2**1.5)
    kurt = _ratio((d**4).mean(axis=1), m2**2, default=3.0) - 3.0
    return _pad(skew, len(r)), _pad(kurt, len(r))


def technical_features(bars: OHLCV) -> tuple[np.ndarray, list[str]]:
    """(n, F) float64 features and their names. Rows before ``LOOKBACK`` are incomplete (NaN);
    row t uses rows <= t only."""
    o, h, lo, c, v = bars.open, bars.high, bars.low, bars.close, bars.volume
    n = len(c)
    logc = np.log(c)
    r1 = logc - _shift(logc, 1)
    prev_c = _shift(c, 1)
    cols: dict[str, np.ndarray] = {}

    for w in _RETURN_WINDOWS:
        cols[f"ret_{w}d"] = logc - _shift(logc, w)
    for k in _LAGS:
        cols[f"ret_1d_lag{k}"] = _shift(r1, k)
    vols = {w: _std(r1, w) for w in _VOL_WINDOWS}
    for w, vol in vols.items():
        cols[f"vol_{w}d"] = vol
    cols["vol_ratio_5_60"] = np.log(_ratio(vols[5], vols[60], 1.0) + 1e-12)
    cols["vol_ratio_20_60"] = np.log(_ratio(vols[20], vols[60], 1.0) + 1e-12)
    hl2 = np.log(h / lo) ** 2
    for w in (5, 20):
        cols[f"parkinson_vol_{w}d"] = np.sqrt(_mean(hl2, w) / (4.0 * math.log(2.0)))

    smas = {w: _mean(c, w) for w in _MA_WINDOWS}
    for w, sma in smas.items():
        cols[f"close_sma{w}"] = logc - np.log(sma)
    cols["sma5_sma20"] = np.log(smas[5] / smas[20])
    cols["sma20_sma60"] = np.log(smas[20] / smas[60])

    fast = _windowed_ema(c, *_EMA_FAST)
    slow = _windowed_ema(c, *_EMA_SLOW)
    macd = np.log(fast / slow)
    signal = _pad(_windowed_ema(macd[~np.isnan(macd)], *_EMA_SIGNAL), n)
    cols["macd"] = macd
    cols["macd_signal"] = signal
    cols["macd_hist"] = macd - signal

    gain, loss = np.maximum(r1, 0.0), np.maximum(-r1, 0.0)
    for w in _RSI_WINDOWS:
        g, los = _mean(gain, w), _mean(loss, w)
        cols[f"rsi_{w}"] = _ratio(g, g + los, 0.5) - 0.5

    for w in (20, 40):
        mean, std = smas[w], _std(c, w)
        cols[f"bollinger_pos_{w}"] = _ratio(c - mean, 2.0 * std)
        cols[f"bollinger_width_{w}"] = 4.0 * std / mean

    true_range = np.maximum(h - lo, np.maximum(np.abs(h - prev_c), np.abs(lo - prev_c)))
    for w in (5, 14):
        cols[f"atr_{w}"] = _mean(true_range, w) / c

    for w in (14, 60):
        low_w, high_w = _min(lo, w), _max(h, w)
        cols[f"stoch_{w}"] = _ratio(c - low_w, high_w - low_w, 0.5) - 0.5
    for w in (20, 60):
        cols[f"dist_high_{w}"] = logc - np.log(_max(h, w))
        cols[f"dist_low_{w}"] = logc - np.log(_min(lo, w))

    cols["body"] = np.log(c / o)
    cols["range"] = np.log(h / lo)
    cols["close_location"] = _ratio(c - lo, h - lo, 0.5) - 0.5
    cols["gap"] = np.log(o / prev_c)
    cols["upper_shadow"] = np.log(h / np.maximum(o, c))
    cols["lower_shadow"] = np.log(np.minimum(o, c) / lo)

    lv = np.log1p(v)
    cols["volume_change"] = lv - _shift(lv, 1)
    for w in (5, 20, 60):
        cols[f"volume_rel_{w}"] = lv - _mean(lv, w)
    cols["volume_z_20"] = _ratio(lv - _mean(lv, 20), _std(lv, 20))
    signed = np.sign(r1) * v
    cols["volume_flow_20"] = _ratio(_pad(_windows(signed, 20).sum(axis=1), n), _pad(_windows(v, 20).sum(axis=1), n))

    for w in (20, 60):
        skew, kurt = _moments(r1, w)
        cols[f"skew_{w}d"] = skew
        cols[f"kurt_{w}d"] = kurt
    cols["up_fraction_20"] = _mean((r1 > 0).astype(np.float64), 20) - 0.5

    days = bars.dates.astype("datetime64[D]")
    day_number = days.astype(np.int64)
    weekday = (day_number + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    month = days.astype("datetime64[M]").astype(np.int64) % 12
    day_of_month = (days - days.astype("datetime64[M]")).astype(np.int64)
    for name, value, period in (("weekday", weekday, 5.0), ("month", month, 12.0), ("monthday", day_of_month, 31.0)):
        cols[f"{name}_sin"] = np.sin(2.0 * math.pi * value / period)
        cols[f"{name}_cos"] = np.cos(2.0 * math.pi * value / period)
    cols["days_since_prev"] = np.log(day_number - _shift(day_number.astype(np.float64), 1))

    matrix = np.column_stack(list(cols.values()))
    matrix[:LOOKBACK] = np.nan  # one warm-up for all features: row t is complete iff t >= LOOKBACK
    return matrix, list(cols)


def _feature_names() -> list[str]:
    days = np.arange(np.datetime64("2000-01-03"), np.datetime64("2000-01-03") + LOOKBACK + 1)
    ones = np.ones(len(days))
    return technical_features(OHLCV(days, ones, ones, ones, ones, ones, ones))[1]


FEATURE_NAMES: list[str] = _feature_names()


# --------------------------------------------------------------------------- pipeline


@dataclass
class FeaturePipeline:
    """Fitted standardisation + PCA from technical features to ``output_size`` embedding dims."""

    feature_names: list[str]
    mean: np.ndarray  # (F,)
    std: np.ndarray  # (F,)
    clip: float
    pca_mean: np.ndarray  # (F,)
    components: np.ndarray  # (D, F)
    scale: np.ndarray  # (D,) whitening: sqrt of each component's variance on the fit span
    explained_variance_ratio: list[float]
    fit_span: dict
    lookback: int = LOOKBACK

    @property
    def output_size(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, features: np.ndarray, output_size: int, dates: np.ndarray | None = None, clip: float = 5.0):
        """Fit on complete feature rows (the TRAINING span only: the caller cuts it)."""
        rows = features[~np.isnan(features).any(axis=1)]
        count = len(FEATURE_NAMES)
        if features.shape[1] != count:
            raise ValueError(f"expected {count} features, got {features.shape[1]}")
        if not 0 < output_size <= count:
            raise ValueError(f"input_size must be between 1 and {count} (the number of features), got {output_size}")
        if len(rows) <= output_size:
            raise ValueError(f"need more than {output_size} complete feature rows to fit, got {len(rows)}")
        mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        z = np.clip((rows - mean) / std, -clip, clip)
        pca_mean = z.mean(axis=0)
        _, singular, vt = np.linalg.svd(z - pca_mean, full_matrices=False)
        components = vt[:output_size]
        # Deterministic sign: the largest loading of each component is positive.
        signs = np.sign(components[np.arange(output_size), np.abs(components).argmax(axis=1)])
        components = components * signs[:, None]
        variance = singular**2 / (len(rows) - 1)
        scale = np.sqrt(np.maximum(variance[:output_size], 1e-12))
        span = {}
        if dates is not None:
            complete = dates[~np.isnan(features).any(axis=1)]
            span = {"start": str(complete[0]), "end": str(complete[-1]), "rows": int(len(rows))}
        return cls(
            list(FEATURE_NAMES),
            mean,
            std,
            float(clip),
            pca_mean,
            components,
            scale,
            [float(x) for x in variance[:output_size] / variance.sum()],
            span,
        )

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(n, F) features -> (n, D) float64 embeddings (NaN rows stay NaN)."""
        z = np.clip((features - self.mean) / self.std, -self.clip, self.clip)
        return ((z - self.pca_mean) @ self.components.T) / self.scale

    def embed(self, bars: OHLCV) -> np.ndarray:
        """Bars -> (n, D) embeddings; rows before the lookback are NaN."""
        return self.transform(technical_features(bars)[0])

    def rows_needed(self, seq_len: int) -> int:
        return self.lookback + seq_len

    def window(self, table: Table, seq_len: int) -> Window:
        """An OHLCV request table -> the model window of its last ``seq_len`` days.

        Reads (and validates) only the last ``lookback + seq_len`` rows; the current price is
        the last raw Close.
        """
        needed = self.rows_needed(seq_len)
        ohlcv.require_columns(table.header)
        require_rows(
            table,
            needed,
            f" rows of daily prices: each of the model's {seq_len} window days needs the {self.lookback} days "
            f"before it for its features ({self.lookback} + {seq_len} = {needed}).",
        )
        bars = ohlcv.from_table(table, len(table.rows) - needed)
        embeddings = self.embed(bars)[-seq_len:].astype(np.float32)
        bad_days = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
        if bad_days.size:  # positive finite prices can still overflow a ratio (e.g. Close = 1e-320)
            row = len(table.rows) - seq_len + int(bad_days[0])
            raise InputError(
                f"Row {row + 1} (line {table.lines[row]}): the prices up to this day give non-finite features; "
                "check the magnitude of its Open/High/Low/Close values and of the days before it.",
                reason="bad_value",
            )
        return Window(embeddings=embeddings, current_price=float(bars.raw_close[-1]))

    # ------------------------------------------------------------------ checkpoint state

    def state(self) -> dict:
        """Tensors and plain values only: loads with ``torch.load(weights_only=True)``."""
        return {
            "kind": KIND,
            "feature_names": list(self.feature_names),
            "lookback": int(self.lookback),
            "output_size": self.output_size,
            "clip": float(self.clip),
            "mean": torch.from_numpy(self.mean.copy()),
            "std": torch.from_numpy(self.std.copy()),
            "pca_mean": torch.from_numpy(self.pca_mean.copy()),
            "components": torch.from_numpy(self.components.copy()),
            "scale": torch.from_numpy(self.scale.copy()),
            "explained_variance_ratio": list(self.explained_variance_ratio),
            "fit_span": dict(self.fit_span),
        }

    @classmethod
    def from_state(cls, state: dict) -> FeaturePipeline:
        """Rebuild from a checkpoint's ``feature_pipeline``; a state this code cannot reproduce
        exactly (another kind, other features, wrong shapes) is a `CheckpointError`."""
        if not isinstance(state, dict) or state.get("kind") != KIND:
            kind = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise CheckpointError(f"feature_pipeline: unknown kind {kind!r}; this code implements {KIND!r}.")
        names = state.get("feature_names")
        if names != FEATURE_NAMES:
            raise CheckpointError(
                "feature_pipeline: its feature list differs from this code's "
                f"({len(names) if isinstance(names, list) else '?'} vs {len(FEATURE_NAMES)} features); "
                "the model was trained with another feature version."
            )
        if state.get("lookback") != LOOKBACK:
            raise CheckpointError(f"feature_pipeline: lookback {state.get('lookback')!r}, this code uses {LOOKBACK}.")
        arrays = {}
        for key in ("mean", "std", "pca_mean", "components", "scale"):
            value = state.get(key)
            if not isinstance(value, torch.Tensor) or not torch.isfinite(value).all():
                raise CheckpointError(f"feature_pipeline: {key!r} must be a finite tensor.")
            arrays[key] = value.detach().to(torch.float64).numpy().copy()
        count = len(FEATURE_NAMES)
        dims = arrays["components"].shape[0] if arrays["components"].ndim == 2 else -1
        expected = {
            "mean": (count,),
            "std": (count,),
            "pca_mean": (count,),
            "components": (dims, count),
            "scale": (dims,),
        }
        for key, shape in expected.items():
            if arrays[key].shape != shape or dims <= 0:
                raise CheckpointError(
                    f"feature_pipeline: {key!r} has shape {arrays[key].shape}, expected {shape} ({count} features)."
                )
        if (arrays["std"] <= 0).any() or (arrays["scale"] <= 0).any():
            raise CheckpointError("feature_pipeline: 'std' and 'scale' must be positive.")
        return cls(
            list(names),
            arrays["mean"],
            arrays["std"],
            float(state.get("clip", 5.0)),
            arrays["pca_mean"],
            arrays["components"],
            arrays["scale"],
            list(state.get("explained_variance_ratio", [])),
            dict(state.get("fit_span", {})),
            LOOKBACK,
        )
