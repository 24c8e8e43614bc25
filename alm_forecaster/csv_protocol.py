"""CSV requests, the platform's original contract: one series per request, the seed's answer.

    body (multipart field or raw text/csv / octet-stream) + options (X-Forecast-Horizon,
    X-Forecast-Quantiles, or multipart fields horizon and quantiles)
    -> options checked against the model (options.py), then the model's window (inputs.py:
       embeddings, OHLCV or one price a day), or a 400/422 naming the problem
    -> (one forward with the batch) -> {"predicted_prices", "prediction_horizon", "current_price",
       "model", "model_version"[, "quantiles": {"0.05": [...], ...}]}

``predicted_prices`` are the point forecasts (the median for quantile models); the quantile
keys are the levels as decimal strings, their values prices for steps 1..horizon.
"""

from __future__ import annotations

import sys

import numpy as np

from alm_forecaster import options
from alm_forecaster.forecast import Forecast
from alm_forecaster.kinds import LEVEL, PRICE
from alm_forecaster.outcome import OK, Outcome
from alm_forecaster.pipeline import Pipeline
from alm_forecaster.request import Job, Request

#: How a refused price names the fix, when the model also forecasts levels.
LEVEL_HINT = "send it with the header 'X-Series-Kind: level' (or the multipart field kind=level)"


def decode(request: Request, pipeline: Pipeline) -> Job:
    """A CSV request -> its one window; raises `InputError` naming what is wrong with it."""
    chosen = options.resolve(request.horizon, request.quantiles, pipeline.head.steps, pipeline.head.levels or None)
    kind = options.series_kind(request.kind, pipeline.head.kinds)
    hint = LEVEL_HINT if LEVEL.name in pipeline.head.kinds else ""
    window = pipeline.input.csv_window(request.body, kind, hint)
    return Job(chosen, ("",), (kind,), [window], [None], sys.modules[__name__])


def encode(job: Job, forecast: Forecast) -> Outcome:
    """The seed-format answer, or the error of the request's one series."""
    if forecast.errors[0] is not None:
        return Outcome.from_error(forecast.errors[0])
    point = forecast.point[0].tolist()
    body = {
        "predicted_prices": point,
        "prediction_horizon": len(point),
        "current_price": float(forecast.anchors[0]),
        "model": forecast.model,
        "model_version": forecast.version,
    }
    if forecast.levels:
        body["quantiles"] = forecast.by_level(0)
    return Outcome(OK, body, None, forecast)


def error(exc: BaseException) -> Outcome:
    """``{"error": "<message>", "code": <status>}`` with the status of the problem."""
    return Outcome.from_error(exc)


def read_answer(body: dict) -> Forecast:
    """A served CSV answer (200) back into the `Forecast` it encodes, for clients."""
    levels = tuple(float(level) for level in body.get("quantiles", {}))
    point = np.array([body["predicted_prices"]], dtype=np.float64)
    grid = [body["quantiles"][key] for key in body.get("quantiles", {})]
    quantiles = np.array(grid, dtype=np.float64).T[None] if grid else np.empty((*point.shape, 0))
    return Forecast(
        ("",),
        (PRICE,),
        np.array([body["current_price"]], dtype=np.float64),
        point,
        levels,
        quantiles,
        (None,),
        body.get("model", ""),
        body.get("model_version", ""),
    )
