"""A request as the core sees it (`Request`), and once its protocol has decoded it (`Job`).

Request (body, content type, raw options)
  --csv_protocol.decode or kserve.decode--> Job: the series to forecast, each with its model
    window or the error that refuses it, the validated options, and the protocol's encoder
  --pipeline.Pipeline.run (all jobs of a batch, one forward)--> a Forecast per job
  --job.encode(job, forecast)--> the request's Outcome
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from alm_forecaster.contract import Window
from alm_forecaster.errors import RequestError
from alm_forecaster.kinds import SeriesKind
from alm_forecaster.options import ForecastOptions

if TYPE_CHECKING:  # signatures only: these modules import this one
    from alm_forecaster.forecast import Forecast
    from alm_forecaster.outcome import Outcome
    from alm_forecaster.pipeline import Pipeline


@dataclass(frozen=True)
class Request:
    """One request: the body, its content type, and the raw options (None when not given;
    strings from headers or form fields)."""

    body: dict | bytes | bytearray | str
    content_type: str | None = None
    horizon: object = None
    quantiles: object = None
    kind: object = None
    scenario: dict[str, str] | None = None  # a CSV book's options (book.CSV_OPTIONS), when given


class WireProtocol(Protocol):
    """What a protocol module (csv_protocol.py, kserve.py) provides: its requests decoded, its
    answers and its errors encoded in its own shapes."""

    def decode(self, request: Request, pipeline: Pipeline) -> Job: ...

    def encode(self, job: Job, forecast: Forecast) -> Outcome: ...

    def error(self, exc: BaseException) -> Outcome: ...


@dataclass(frozen=True)
class Job:
    """A decoded request: its series' windows (or refusals), its options and the protocol that
    answers it.

    ``windows[i]`` and ``errors[i]``: exactly one is None for each series ``i``. ``context`` is
    whatever the protocol that decoded the request needs to encode the answer (the KServe
    document's series); only that protocol reads it.
    """

    options: ForecastOptions
    names: tuple[str, ...]
    kinds: tuple[SeriesKind, ...]
    windows: list[Window | None]
    errors: list[RequestError | None]
    protocol: WireProtocol
    context: object = None
