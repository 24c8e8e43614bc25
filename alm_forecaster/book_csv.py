"""A book sent as a wide CSV, for curl users: the same book as a JSON request, answered the same way.

Date,spx,wti,ust10y          one row per common business day, oldest first
2024-01-02,4742.8,70.4,3.95
...
headers (or multipart fields): X-Book-Exposures: spx=1e6,wti=-5e5,ust10y=-8e4,
X-Series-Kinds: ust10y=level, X-Forecast-Horizon: 250, X-Forecast-Quantiles: 0.01,0.99,
X-Scenario-Paths, X-Scenario-Seed, X-Risk-Levels, X-Return-Paths
-> the table read whole (prices.wide_panel: every cell, each column's kind, the dates)
-> the document of the equivalent JSON book (kserve.TimeSeriesRequest) -> kserve.book_job:
   the answer is the same ForecastResponse with its ``book``, errors in KServe's shape
"""

from __future__ import annotations

from alm_forecaster import book, kserve, prices
from alm_forecaster.errors import InputError
from alm_forecaster.forecast import Forecast
from alm_forecaster.kinds import KINDS, LEVEL
from alm_forecaster.outcome import Outcome
from alm_forecaster.pipeline import Pipeline
from alm_forecaster.request import Job, Request
from alm_forecaster.table import read_table

#: How a refused price names the fix, in a book's CSV.
LEVEL_HINT = "name its column in the header 'X-Series-Kinds' (e.g. 'X-Series-Kinds: ust10y=level')"


def decode(request: Request, pipeline: Pipeline) -> Job:
    """A wide CSV with book options -> the book's job (answered by kserve.encode)."""
    fields = request.scenario or {}
    kinds = {}
    for name, kind in book.pairs(fields.get("kinds"), "kinds").items():
        if kind.lower() not in KINDS or kind.lower() not in pipeline.head.kinds:
            raise InputError(
                f"Option 'kinds': {name}={kind} is not a series kind this model serves; allowed: "
                f"{', '.join(pipeline.head.kinds)}.",
                reason="bad_option",
                param="kinds",
            )
        kinds[name] = KINDS[kind.lower()]
    hint = LEVEL_HINT if LEVEL.name in pipeline.head.kinds else ""
    panel = prices.wide_panel(read_table(request.body), kinds, hint)
    inputs = [kserve.SeriesInput(i, name, "D", panel.starts[i], panel.kinds[i]) for i, name in enumerate(panel.names)]
    wanted = book.from_fields(fields, request.horizon, request.quantiles, list(panel.names), pipeline.head.levels)
    document = kserve.TimeSeriesRequest(pipeline.name, inputs, panel, request.horizon, request.quantiles)
    return kserve.book_job(document, pipeline, wanted)


def encode(job: Job, forecast: Forecast) -> Outcome:
    """A book's answer: the ForecastResponse with its ``book`` (kserve.py's)."""
    return kserve.encode(job, forecast)


def error(exc: BaseException) -> Outcome:
    """A book's errors: KServe's ErrorResponse, as for a JSON book."""
    return kserve.error(exc)
