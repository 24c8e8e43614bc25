"""Distribution baselines a risk team uses: historical simulation, filtered historical
simulation (EWMA volatility) and GARCH(1,1) with Student-t innovations.

Each forecasts quantiles of the h-day change y[t+h] - y[t] of a series' additive coordinates
(kinds.py: log prices, so log returns) made at origin t with data up to t only.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from alm_forecaster import scaling

HS_WINDOW = 250
FHS_WINDOW = 1000
GARCH_WINDOW = 1000
GARCH_REFIT = 20


def historical_simulation(y: np.ndarray, origins: np.ndarray, horizon: int, levels: list[float]) -> np.ndarray:
    """(len(origins), horizon, len(levels)): empirical quantiles of the last 250 overlapping
    h-day changes that ended by the origin."""
    logc = np.asarray(y, dtype=np.float64)
    out = np.full((len(origins), horizon, len(levels)), np.nan)
    for h in range(1, horizon + 1):
        ret = logc[h:] - logc[:-h]  # ret[s] = return from s to s+h, known at s+h
        for i, t in enumerate(origins):
            end = t - h + 1  # returns whose end day s+h <= t
            past = ret[max(0, end - HS_WINDOW) : end]
            out[i, h - 1] = np.quantile(past, levels)
    return out


def filtered_historical_simulation(y: np.ndarray, origins: np.ndarray, horizon: int, levels: list[float]) -> np.ndarray:
    """The last 1000 standardised h-day changes that ended by the origin (each divided by the
    EWMA volatility, the model's own sigma, at its start: `scaling.standardised_changes`); their
    quantiles, scaled back by today's sigma: what the model would be with a network that learned
    nothing beyond that scale."""
    from alm_forecaster.close_features import features

    _, sigma = features(y)
    z_all = scaling.standardised_changes(np.asarray(y, dtype=np.float64), sigma, horizon)
    scale = scaling.horizon_scale(sigma[origins], horizon)
    out = np.full((len(origins), horizon, len(levels)), np.nan)
    for h in range(1, horizon + 1):
        z = z_all[:, h - 1]  # z[s]: from s to s+h, known at s+h
        for i, t in enumerate(origins):
            end = t - h + 1
            past = z[max(0, end - FHS_WINDOW) : end]
            past = past[np.isfinite(past)]
            out[i, h - 1] = np.quantile(past, levels) * scale[i, h - 1]
    return out


def garch_t(y: np.ndarray, origins: np.ndarray, horizon: int, levels: list[float]) -> np.ndarray:
    """GARCH(1,1), constant mean, Student-t innovations, refit every 20 origins on the last
    1000 daily changes; the h-day change's quantile is mu*h + sqrt(sum of the h variance
    forecasts) times the unit-variance t quantile."""
    from arch import arch_model

    r = 100 * np.diff(y)  # r[s-1] = change of day s, in hundredths (percent of a log return)
    out = np.full((len(origins), horizon, len(levels)), np.nan)
    params = None
    for i, t in enumerate(origins):
        sample = r[max(0, t - GARCH_WINDOW) : t]
        model = arch_model(sample, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
        if params is None or i % GARCH_REFIT == 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params = model.fit(disp="off", show_warning=False).params
        fc = model.forecast(params=params, horizon=horizon, reindex=False)
        var = fc.variance.values[-1]
        mu, nu = params["mu"], params["nu"]
        unit = stats.t.ppf(levels, nu) * np.sqrt((nu - 2) / nu)
        for h in range(1, horizon + 1):
            out[i, h - 1] = (mu * h + np.sqrt(var[:h].sum()) * unit) / 100
    return out
