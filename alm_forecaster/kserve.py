"""Many series in one request: KServe's time-series forecast protocol, in JSON.

    POST /predictions/<model>   Content-Type: application/json
    {"model": "...", "inputs": [{"type": "univariate_time_series", "name": "eurusd",
      "series": [1.081, 1.079, ...], "frequency": "D", "start_timestamp": "2024-01-02"}, ...],
     "options": {"horizon": 5, "quantiles": [0.05, 0.95]}}
    -> a document error (not JSON, a missing or mistyped field) is one 400 naming the field
    -> the inputs become a panel (panel.py): each series validated on its own, a bad one refused alone
    -> each series' window (inputs.py), all of the request's through one batched forward (pipeline.py)
    -> {"id", "created_at", "status": completed | partial | error, "model", "outputs": [
         {"type": "time_series_forecast", "id", "status": completed | error,
          "content": [{"type", "name", "mean_forecast", "frequency", "start_timestamp", "quantiles"}],
          "error": {"code", "message", "param", "type"}}]}

``series`` is one price per day, oldest first (the models here forecast daily prices: other
frequencies are refused per series). ``mean_forecast`` carries the model's point forecast (the
median for quantile models). As the protocol says, ``quantiles`` are returned when
``options.quantiles`` asks for them. The forecast's ``start_timestamp`` is the input's plus
len(series) days, as the protocol computes it; the steps are the series' next observations.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from itertools import chain

import numpy as np

from alm_forecaster import book, json_limits, scenarios
from alm_forecaster import options as forecast_options
from alm_forecaster.book import BookRequest
from alm_forecaster.errors import MALFORMED, InputError, RequestError, fault, shown
from alm_forecaster.forecast import Forecast
from alm_forecaster.kinds import DEFAULT as DEFAULT_KIND
from alm_forecaster.kinds import LEVEL, PRICE, SeriesKind
from alm_forecaster.outcome import OK, Outcome
from alm_forecaster.panel import Panel
from alm_forecaster.pipeline import Pipeline
from alm_forecaster.request import Job, Request

CONTENT_TYPE = "application/json"
UNIVARIATE = "univariate_time_series"
DAILY = ("D", "DAY")
MAX_SERIES = json_limits.MAX_SERIES
#: A start_timestamp: an ISO 8601 date, optionally a time (seconds, fractions) and a zone.
ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?")
#: The Python types of the values of a series as json.loads makes them (bool is not a number).
NUMBERS = {float, int}
#: How a refused price names the fix, when the model also forecasts levels.
LEVEL_HINT = 'set "kind": "level" on this input'


@dataclass(frozen=True)
class SeriesInput:
    """What the answer repeats of one input: its position, name, frequency as given and start,
    and the kind of series it is."""

    index: int
    name: str
    frequency: str
    start: np.datetime64 | None
    kind: SeriesKind = PRICE


@dataclass(frozen=True)
class TimeSeriesRequest:
    """The decoded document: its inputs, their values as a panel, and the raw options."""

    model: str
    inputs: list[SeriesInput]
    panel: Panel
    horizon: object
    quantiles: object
    options: dict = field(default_factory=dict)
    book: BookRequest | None = None  # set for a book (options.scenarios)


def decode(request: Request, pipeline: Pipeline) -> Job:
    """A ForecastRequest -> a window (or refusal) per series; a malformed document raises a 400.
    With ``options.scenarios``, a book: see `book_job`."""
    document = parse(request.body, pipeline.head.kinds)
    if book.SCENARIOS in document.options:
        return book_job(document, pipeline)
    head = pipeline.head
    chosen = forecast_options.resolve(
        document.horizon, document.quantiles, head.steps, head.levels or None, default_levels=False
    )
    windows, errors = pipeline.input.series_windows(document.panel)
    return Job(chosen, document.panel.names, document.panel.kinds, windows, errors, sys.modules[__name__], document)


def book_job(document: TimeSeriesRequest, pipeline: Pipeline, request: BookRequest | None = None) -> Job:
    """A book: every series aligned and valid (or the request is refused, naming the first
    problem), each forecast at all the model's steps and levels for the scenario engine;
    ``request``: the book's options when already read (a CSV book), else the document's."""
    head = pipeline.head
    if not head.levels:
        raise InputError(
            f"Option 'options.scenarios': model {pipeline.name!r} forecasts no quantiles; a book needs a quantile "
            "model (its describe lists 'quantiles').",
            reason="bad_option",
            param="options.scenarios",
        )
    if request is None:
        request = book.from_options(document.options, list(document.panel.names), head.levels)
    windows, errors = pipeline.input.series_windows(document.panel)
    refused = next((error for error in errors if error is not None), None)
    if refused is not None:
        raise refused
    book.check_aligned([s.start for s in document.inputs], document.panel.lengths, list(document.panel.names))
    chosen = forecast_options.ForecastOptions(head.steps, head.levels)
    document = replace(document, book=request)
    return Job(chosen, document.panel.names, document.panel.kinds, windows, errors, sys.modules[__name__], document)


def is_json(payload: dict | bytes | bytearray | str, content_type: str | None) -> bool:
    """A JSON document: already decoded (TorchServe decodes application/json bodies), or said so
    by its content type (a body TorchServe could not decode arrives as bytes)."""
    if isinstance(payload, dict):
        return True
    return bool(content_type) and content_type.split(";")[0].strip().lower() == CONTENT_TYPE


def parse(payload: object, kinds: tuple[str, ...] = (DEFAULT_KIND,)) -> TimeSeriesRequest:
    """The request document, its inputs read as the series ``kinds`` the model serves; a
    malformed document is a 400 naming the field."""
    try:
        document = payload if not isinstance(payload, bytes | bytearray | str) else json_limits.loads(payload)
        json_limits.check_depth(document)  # decoded by TorchServe (any JSON value), or here
    except InputError as exc:
        raise _document(exc.message, exc.param or "", exc.reason) from None
    if not isinstance(document, dict):
        raise _document("the body must be a JSON object (a ForecastRequest)", "")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise _document("'model' must be a non-empty string", "model")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _document("'inputs' must be a non-empty list of time series", "inputs")
    if len(inputs) > MAX_SERIES:
        raise _limit(json_limits.too_large("inputs", "series", len(inputs), MAX_SERIES))
    options = document.get("options", {})
    if not isinstance(options, dict):
        raise _document("'options' must be an object (horizon, quantiles)", "options")
    if len(options) > json_limits.MAX_OPTIONS:
        raise _limit(json_limits.too_large("options", "keys", len(options), json_limits.MAX_OPTIONS))
    levels = options.get("quantiles")
    if isinstance(levels, list) and len(levels) > json_limits.MAX_LEVELS:
        raise _limit(json_limits.too_large("options.quantiles", "levels", len(levels), json_limits.MAX_LEVELS))
    names: set[str] = set()
    parsed: list[tuple[SeriesInput, np.ndarray | None, InputError | None]] = []
    for i, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise _document(f"'inputs[{i}]' must be an object", f"inputs[{i}]")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _document(f"'inputs[{i}].name' must be a non-empty string", f"inputs[{i}].name")
        if len(name) > json_limits.MAX_NAME:
            raise _limit(json_limits.too_large(f"inputs[{i}].name", "characters", len(name), json_limits.MAX_NAME))
        values = item.get("series")
        if isinstance(values, list) and len(values) > json_limits.MAX_VALUES:
            raise _limit(json_limits.too_large(f"inputs[{i}].series", "values", len(values), json_limits.MAX_VALUES))
        if name in names:
            raise _document(f"'inputs[{i}].name' {shown(name)} is not unique in the request", f"inputs[{i}].name")
        names.add(name)
        parsed.append(_series(i, name, item, kinds))
    parsed = _arrays(parsed, LEVEL_HINT if LEVEL.name in kinds else "")
    panel = Panel.of(
        [series.name for series, _, _ in parsed],
        [series.kind for series, _, _ in parsed],
        [values for _, values, _ in parsed],
        [f"inputs[{series.index}].series" for series, _, _ in parsed],
        errors=[error for _, _, error in parsed],
    )
    return TimeSeriesRequest(
        model, [series for series, _, _ in parsed], panel, options.get("horizon"), options.get("quantiles"), options
    )


def _series(
    i: int, name: str, item: dict, kinds: tuple[str, ...]
) -> tuple[SeriesInput, np.ndarray | list | None, InputError | None]:
    """One input, checked on its own: what is wrong with it fails this series only. Its values
    are left a list when they are all plain numbers (`_arrays` reads them with the others)."""
    frequency = item.get("frequency")
    where = f"inputs[{i}]"
    kind = PRICE
    try:
        if item.get("type") != UNIVARIATE:
            raise series_error(f"{where}.type", f"must be {UNIVARIATE!r}, got {shown(item.get('type'))}", "bad_type")
        if not isinstance(frequency, str) or frequency.upper() not in DAILY:
            raise series_error(
                f"{where}.frequency",
                f"{shown(frequency)} is not supported: this model forecasts daily series ('D')",
                "bad_frequency",
            )
        start = _timestamp(item.get("start_timestamp"), f"{where}.start_timestamp")
        kind = forecast_options.series_kind(item.get("kind"), kinds, f"{where}.kind", f"{where}.kind")
        values = item.get("series")
        if not isinstance(values, list) or not values or not set(map(type, values)) <= NUMBERS:
            values = _values(values, f"{where}.series", kind, LEVEL_HINT if LEVEL.name in kinds else "")
    except InputError as exc:
        return SeriesInput(i, name, str(frequency), None, kind), None, exc
    return SeriesInput(i, name, frequency, start, kind), values, None


def _arrays(
    parsed: list[tuple[SeriesInput, np.ndarray | list | None, InputError | None]], hint: str
) -> list[tuple[SeriesInput, np.ndarray | None, InputError | None]]:
    """The series left as lists of plain numbers, read and checked all at once (one array and
    one check: per series, the checks cost more than the values); a series with a bad value is
    read again on its own, which names the value."""
    waiting = [k for k, (_, values, _) in enumerate(parsed) if isinstance(values, list)]
    if not waiting:
        return parsed
    lists = [parsed[k][1] for k in waiting]
    counts = np.fromiter(map(len, lists), np.int64, count=len(lists))
    ends = np.cumsum(counts)
    try:
        flat = np.fromiter(chain.from_iterable(lists), np.float64, count=int(ends[-1]))
    except OverflowError:  # an integer beyond float64: read each series on its own, which names it
        flat = np.full(int(ends[-1]), np.nan)
    bad = ~np.isfinite(flat)
    kinds = [parsed[k][0].kind for k in waiting]
    for kind in set(kinds):
        bad |= np.repeat([each is kind for each in kinds], counts) & kind.invalid(flat)
    refused = np.add.reduceat(bad, ends - counts) > 0
    out = list(parsed)
    for n, (k, values) in enumerate(zip(waiting, np.split(flat, ends[:-1]), strict=True)):
        series = parsed[k][0]
        if refused[n]:
            try:
                values = _values(lists[n], f"inputs[{series.index}].series", series.kind, hint)
            except InputError as exc:
                out[k] = (series, None, exc)
                continue
        out[k] = (series, values, None)
    return out


def _values(values: object, where: str, kind: SeriesKind, hint: str) -> np.ndarray:
    """A series' values as float64, checked at array speed; the first bad one is named."""
    if not isinstance(values, list) or not values:
        raise series_error(where, f"must be a non-empty list of {kind.noun}, oldest first", "bad_value")
    if set(map(type, values)) <= NUMBERS:  # the usual series: plain JSON numbers
        try:
            array = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond float64: the scan below names it
            array = None
        if array is not None and np.isfinite(array).all() and not kind.invalid(array).any():
            return array
    for k, value in enumerate(values):  # something is wrong: find and name the first bad value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise series_error(f"{where}[{k}]", f"{shown(value)} is not a number", "bad_value")
        if not json_limits.finite_number(value):
            raise series_error(f"{where}[{k}]", f"{shown(value)} is not a finite number", "bad_value")
        if kind.invalid(np.array([value]))[0]:
            raise kind.refusal(f"{where}[{k}]", value, param=f"{where}[{k}]", hint=hint)
    raise AssertionError("a series was refused but no value is bad")  # pragma: no cover


def _timestamp(value: object, where: str) -> np.datetime64:
    if value is None:
        raise series_error(
            where,
            "is required: the forecast's start_timestamp is this input's plus len(series) days, and KServe's "
            "TimeSeriesForecast must carry one",
            "bad_dates",
        )
    if isinstance(value, str) and ISO_TIMESTAMP.fullmatch(value):
        try:
            return np.datetime64(value[:19].rstrip("Z").replace(" ", "T"), "s")
        except ValueError:
            pass  # a well-formed string that is no date, e.g. 2024-13-45
    raise series_error(
        where, f"{shown(value)} is not an ISO 8601 timestamp (YYYY-MM-DD, optionally a time)", "bad_dates"
    )


def encode(job: Job, forecast: Forecast) -> Outcome:
    """The ForecastResponse: an output per series (its forecast or its error); for a book, every
    series' quantiles from the scenarios and the book's summary (book.py)."""
    document: TimeSeriesRequest = job.context
    if document.book is not None:
        return _encode_book(document, forecast)
    outputs = [
        output(series, forecast, document.panel.lengths[series.index], forecast.errors[series.index])
        for series in document.inputs
    ]
    return Outcome(OK, response(document, forecast.model, outputs), None, forecast)


def _encode_book(document: TimeSeriesRequest, forecast: Forecast) -> Outcome:
    refused = next((error for error in forecast.errors if error is not None), None)
    if refused is not None:  # a book is forecast whole or not at all
        return error(refused)
    settings = document.book.settings(document.panel.names)
    paths = scenarios.simulate(document.panel, forecast, settings)
    outputs = []
    for series in document.inputs:
        i = series.index
        content = {
            "type": UNIVARIATE,
            "name": series.name,
            "mean_forecast": paths.median[i].tolist(),
            "frequency": "day" if series.frequency.lower() == "day" else "D",
            "start_timestamp": forecast_start(series, document.panel.lengths[i]),
            "quantiles": {f"{lv:g}": paths.series[i, :, j].tolist() for j, lv in enumerate(paths.levels)},
        }
        out = {"type": "time_series_forecast", "id": f"ts_{uuid.uuid4().hex}", "status": "completed"}
        outputs.append({**out, "content": [content]})
    body = response(document, forecast.model, outputs)
    body["book"] = book.summary(document.book, paths, document.panel.names)
    return Outcome(OK, body, None, forecast, scenario_paths=document.book.paths)


def error(exc: BaseException) -> Outcome:
    """KServe's ErrorResponse, ``{"error": {"code", "message", "param", "type"}}``, HTTP status = code."""
    problem = fault(exc)
    body = {
        "error": {
            "code": str(problem.status),
            "message": problem.message,
            "param": problem.param or "",
            "type": problem.reason,
        }
    }
    return Outcome(problem.status, body, problem.reason, message=problem.message)


def forecast_start(series: SeriesInput, length: int) -> str:
    """The protocol's forecast start: the input's start plus len(series) days."""
    start = series.start + np.timedelta64(int(length), "D")
    return str(start.astype("datetime64[s]")) + "Z"


def output(series: SeriesInput, forecast: Forecast, length: int, error: RequestError | None) -> dict:
    """One ForecastOutput: the series' forecast, or its error."""
    out = {"type": "time_series_forecast", "id": f"ts_{uuid.uuid4().hex}"}
    if error is not None:
        param = error.param or f"inputs[{series.index}]"
        return {
            **out,
            "status": "error",
            "content": [],
            "error": {"code": str(error.status), "message": error.message, "param": param, "type": error.reason},
        }
    i = series.index
    content = {
        "type": UNIVARIATE,
        "name": series.name,
        "mean_forecast": forecast.point[i].tolist(),
        "frequency": "day" if series.frequency.lower() == "day" else "D",  # a KServe Frequency value
        "start_timestamp": forecast_start(series, length),
    }
    if forecast.levels:
        content["quantiles"] = forecast.by_level(i)
    return {**out, "status": "completed", "content": [content]}


def response(request: TimeSeriesRequest, model: str, outputs: list[dict]) -> dict:
    """The ForecastResponse: completed when every series is, error when none is, else partial."""
    done = sum(o["status"] == "completed" for o in outputs)
    status = "completed" if done == len(outputs) else "error" if done == 0 else "partial"
    return {
        "id": f"resp_{uuid.uuid4().hex}",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "outputs": outputs,
    }


def read_answer(body: dict) -> Forecast:
    """A served ForecastResponse back into the `Forecast` it encodes, for clients: one series per
    output, an output's error as that series' error (its anchors are unknown: NaN)."""
    outputs = body["outputs"]
    contents = [o["content"][0] if o["status"] == "completed" else None for o in outputs]
    steps = max((len(c["mean_forecast"]) for c in contents if c), default=0)
    keys = next((list(c.get("quantiles", {})) for c in contents if c), [])
    point = np.full((len(outputs), steps), np.nan)
    quantiles = np.full((len(outputs), steps, len(keys)), np.nan)
    errors: list[RequestError | None] = []
    for i, (output, content) in enumerate(zip(outputs, contents, strict=True)):
        if content is None:
            e = output["error"]
            errors.append(InputError(e["message"], status=int(e["code"]), reason=e["type"], param=e["param"]))
            continue
        point[i] = content["mean_forecast"]
        if keys:
            quantiles[i] = np.array([content["quantiles"][key] for key in keys]).T
        errors.append(None)
    names = tuple(c["name"] if c else "" for c in contents)
    return Forecast(
        names,
        (PRICE,) * len(outputs),
        np.full(len(outputs), np.nan),
        point,
        tuple(float(key) for key in keys),
        quantiles,
        tuple(errors),
        body.get("model", ""),
        "",
    )


def _limit(exc: InputError) -> InputError:
    return _document(exc.message, exc.param or "", exc.reason)


def _document(problem: str, param: str, reason: str = "bad_json") -> InputError:
    return InputError(
        f"Not a ForecastRequest: {problem}. A JSON body must be KServe's time-series ForecastRequest "
        '({"model", "inputs": [{"type", "name", "series", "frequency"}], "options"}); a CSV is sent as a multipart '
        "field (curl -F data=@prices.csv) or a text/csv body.",
        status=MALFORMED,
        reason=reason,
        param=param,
    )


def series_error(param: str, problem: str, reason: str) -> InputError:
    return InputError(f"{param}: {problem}.", reason=reason, param=param)


def request_document(
    model: str,
    series: list[tuple[str, np.ndarray, np.ndarray]],
    horizon: int = 5,
    quantiles: list | None = None,
    kinds: dict[str, str] | None = None,
) -> dict:
    """A ForecastRequest of daily series (name, dates, values): what clients send; ``kinds``
    names the series that are not prices (``{"ust10y": "level"}``)."""
    levels = quantiles if quantiles is not None else [0.05, 0.25, 0.5, 0.75, 0.95]
    inputs = []
    for name, dates, values in series:
        item = {
            "type": UNIVARIATE,
            "name": name,
            "series": [float(v) for v in values],
            "frequency": "D",
            "start_timestamp": str(np.datetime64(dates[0], "D")) + "T00:00:00Z",
        }
        kind = (kinds or {}).get(name, DEFAULT_KIND)
        if kind != DEFAULT_KIND:
            item["kind"] = kind
        inputs.append(item)
    return {"model": model, "inputs": inputs, "options": {"horizon": horizon, "quantiles": levels}}
