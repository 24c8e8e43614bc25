"""What one request gets back: a status, the JSON body, the reason of a refusal, the forecast.

Every request ends in exactly one `Outcome`, whatever happened to it, so a server or the
offline CLI answers it without inspecting types:

* a forecast: 200, the body its protocol encoded, reason ``None``, and the `Forecast` object
  itself for in-process callers (the backtest reads it, not the body);
* a request that gets no forecast (`errors.RequestError`: a refusal, or the unexpected failure
  of this request alone, see `errors.fault`): its status, the error shape of its protocol
  (``{"error": ..., "code": ...}`` for CSV, KServe's ErrorResponse for JSON), its reason and
  message.

``reason`` is the metrics label of a request that got no forecast.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus

import orjson

from alm_forecaster.errors import fault
from alm_forecaster.forecast import Forecast

#: A forecast.
OK = int(HTTPStatus.OK)


@dataclass(frozen=True)
class Outcome:
    """One request's answer: HTTP ``status``, JSON ``body``, the ``reason`` it got no forecast,
    and the ``forecast`` its body encodes (None without one)."""

    status: int
    body: dict
    reason: str | None = None
    forecast: Forecast | None = field(default=None, compare=False, repr=False)  # compared through the body
    message: str | None = field(default=None, compare=False)  # why there is no forecast (for logs)
    scenario_paths: int = field(default=0, compare=False)  # a book's simulated paths (for metrics)

    @property
    def ok(self) -> bool:
        """True for a forecast."""
        return self.reason is None

    def json(self) -> bytes:
        """The body as JSON bytes: orjson's (a 1,000-series answer in under a millisecond, where
        json.dumps takes over 10), or json.dumps's for what orjson refuses (an integer beyond 64
        bits). Both write the same JSON values; a body holds no NaN (a non-finite forecast is an
        error), which orjson would write as null where json.dumps writes the invalid ``NaN``."""
        try:
            return orjson.dumps(self.body)
        except orjson.JSONEncodeError:  # a TypeError: what orjson cannot write
            return json.dumps(self.body).encode()

    @classmethod
    def from_error(cls, exc: BaseException) -> Outcome:
        """The answer to a request that raised ``exc`` (`errors.fault` decides what it says)."""
        error = fault(exc)
        return cls(error.status, error.to_dict(), error.reason, message=error.message)
