"""A loaded model ready to serve: requests -> forecast objects, one forward per batch.

    Request (body, content type, options)
      CSV  -> Table (table.py) -> one Window: embeddings (contract.py), or raw prices through the
              model's feature pipeline (OHLCV: features.py; one price a day: close_features.py)
      JSON -> KServe time-series document (timeseries_api.py) -> one Window per series
    -> every window of every request in one batched forward (model.py)
    -> point returns, and for quantile models calibrated quantiles (quantiles.py)
    -> prices -> the response object (response.py), or the ForecastResponse document

Each request of a batch (and each series of a JSON request) succeeds or fails on its own and
every request ends in one `Outcome` (outcome.py): a forecast, the refusal of a bad request, or
the failure of that request alone; its batch mates still get their forecasts. The TorchServe
handler, the offline CLI and the backtest all go through `Forecaster.predict`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from alm_forecaster import close_features, native, options, prices, timeseries_api
from alm_forecaster.checkpoint import LoadedCheckpoint, load_checkpoint
from alm_forecaster.close_features import ClosePipeline
from alm_forecaster.contract import Window, canonical_header, embedding_window, fast_embedding_window
from alm_forecaster.device import select_device
from alm_forecaster.errors import InputError
from alm_forecaster.features import FeaturePipeline, looks_like_ohlcv
from alm_forecaster.outcome import Outcome
from alm_forecaster.response import forecast_response
from alm_forecaster.table import decode, read_table

log = logging.getLogger(__name__)


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads deliberately: the argument, ``ALM_FORECASTER_THREADS``, or
    the number of cores this process may use. Returns the number set."""
    count = threads or int(os.environ.get("ALM_FORECASTER_THREADS", "0")) or len(os.sched_getaffinity(0))
    torch.set_num_threads(count)
    return count


@dataclass(frozen=True)
class Request:
    """One request as the core sees it: the body, its content type, and the raw options
    (None when not given; strings from headers or form fields)."""

    body: dict | bytes | bytearray | str
    content_type: str | None = None
    horizon: object = None
    quantiles: object = None


@dataclass
class Timings:
    """Milliseconds spent in each stage of the last `Forecaster.predict` call."""

    parse_ms: float = 0.0
    forward_ms: float = 0.0
    response_ms: float = 0.0
    stages: dict = field(default_factory=dict)


@dataclass
class _Parsed:
    """A request after parsing: its windows (or per-series refusals) and how to answer it."""

    options: options.ForecastOptions
    windows: list[Window | InputError]
    document: timeseries_api.TimeSeriesRequest | None = None


class Forecaster:
    """A validated checkpoint on a device, with its name, version and data contract."""

    def __init__(
        self,
        loaded: LoadedCheckpoint,
        name: str,
        version: str = "1.0",
        device: torch.device | None = None,
        seq_len: int | None = None,
        precision: str = "fp32",
    ) -> None:
        self.loaded = loaded
        self.name = name
        self.version = version
        self.device = device or select_device()
        self.seq_len = seq_len or loaded.config.seq_len
        self.input_size = loaded.config.input_size
        self.model = loaded.model.to(self.device).eval()
        self.precision = self._usable_precision(precision)
        self.pipeline = _pipeline(loaded.feature_pipeline)
        self.quantile_head = loaded.quantile_head
        self.steps = self.quantile_head.steps if self.quantile_head else loaded.config.output_size
        self.header = canonical_header(self.input_size)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        name: str | None = None,
        version: str = "1.0",
        device: torch.device | str | None = None,
        seq_len: int | None = None,
        precision: str = "fp32",
    ) -> Forecaster:
        resolved = device if isinstance(device, torch.device) else select_device(device)
        return cls(load_checkpoint(path), name or Path(path).stem, version, resolved, seq_len, precision)

    def _usable_precision(self, requested: str) -> str:
        """``requested`` when this device and kernel have it; bf16 elsewhere serves float32
        (exact, and slower) with a warning rather than not serving."""
        if requested not in native.PRECISIONS:
            raise ValueError(f"precision must be one of {native.PRECISIONS}, got {requested!r}")
        if requested == "bf16" and not (self.device.type == "cpu" and native.has_bf16()):
            log.warning(
                "%s: precision bf16 needs the native kernel on a CPU with AVX512-BF16 (device %s, kernel %s); "
                "serving float32",
                self.name,
                self.device,
                native.variant(),
            )
            return "fp32"
        return requested

    @property
    def levels(self) -> tuple[float, ...] | None:
        return self.quantile_head.levels if self.quantile_head else None

    @property
    def rows_needed(self) -> int:
        """Rows a request must have: the window, plus the pipeline's lookback for raw prices."""
        return self.pipeline.rows_needed(self.seq_len) if self.pipeline else self.seq_len

    def predict_files(self, paths: list[Path], batch_size: int = 64) -> Iterator[tuple[Path, Outcome]]:
        """(path, outcome) per file, in order, ``batch_size`` files per forward; a file that
        cannot be read is refused without reaching the model."""
        for first in range(0, len(paths), batch_size):
            chunk = paths[first : first + batch_size]
            outcomes: dict[int, Outcome] = {}
            payloads: dict[int, bytes] = {}
            for i, path in enumerate(chunk):
                try:
                    payloads[i] = Path(path).read_bytes()
                except OSError as exc:
                    refusal = InputError(f"cannot read the file: {exc.strerror or exc}", reason="unreadable")
                    outcomes[i] = Outcome.from_error(refusal)
            requests = [Request(body, _content_type(chunk[i])) for i, body in payloads.items()]
            outcomes.update(zip(payloads, self.predict(requests), strict=True))
            yield from ((path, outcomes[i]) for i, path in enumerate(chunk))

    def predict(
        self, requests: list[Request | bytes | bytearray | str], timings: Timings | None = None
    ) -> list[Outcome]:
        """One `Outcome` per request, in order. Nothing a request contains or causes escapes:
        each request is parsed on its own and every valid window of the batch shares one forward."""
        timings = timings if timings is not None else Timings()
        start = time.perf_counter()
        outcomes: dict[int, Outcome] = {}
        parsed: dict[int, _Parsed] = {}
        for i, request in enumerate(requests):
            try:
                parsed[i] = self.parse_request(request if isinstance(request, Request) else Request(request))
            except Exception as exc:
                outcomes[i] = Outcome.from_error(exc)
        slots = {(i, k): w for i, p in parsed.items() for k, w in enumerate(p.windows) if isinstance(w, Window)}
        parse_done = time.perf_counter()
        raw, failures = self._forward_isolated(slots)
        raw = self._quantile_returns(raw, slots)
        forward_done = time.perf_counter()
        for i, p in parsed.items():
            outcomes[i] = self._answer(i, p, raw, failures)
        done = time.perf_counter()
        timings.parse_ms = (parse_done - start) * 1e3
        timings.forward_ms = (forward_done - parse_done) * 1e3
        timings.response_ms = (done - forward_done) * 1e3
        return [outcomes[i] for i in range(len(requests))]

    def parse_request(self, request: Request) -> _Parsed:
        """A request -> its windows; raises `InputError` naming what is wrong with the request."""
        if timeseries_api.is_json(request.body, request.content_type):
            document = timeseries_api.parse(request.body)
            chosen = options.resolve(
                document.horizon, document.quantiles, self.steps, self.levels, default_levels=False
            )
            windows = [self._series_window(series) for series in document.inputs]
            return _Parsed(chosen, windows, document)
        chosen = options.resolve(request.horizon, request.quantiles, self.steps, self.levels)
        return _Parsed(chosen, [self.parse(request.body)])

    def parse(self, payload: bytes | bytearray | str) -> Window:
        """A CSV body -> validated window; raises `InputError` naming the problem.

        The usual embeddings request (the exact header, plain numbers) takes numpy's reader; any
        other, and every bad one, the checked path that names what is wrong.
        """
        text = decode(payload)
        if not isinstance(self.pipeline, ClosePipeline):
            window = fast_embedding_window(text, self.header, self.seq_len)
            if window is not None:
                return window
        table = read_table(text)
        embeddings = any(name.strip().startswith("emb_") for name in table.header)
        if isinstance(self.pipeline, ClosePipeline):
            if embeddings:
                raise InputError(
                    f"Model '{self.name}' forecasts from prices, not embeddings: send a Date column and one price "
                    f"column (Close, Adj Close, Price or Value), at least {self.rows_needed} rows.",
                    reason="prices_required",
                )
            return self.pipeline.window(table, self.seq_len)
        ohlcv = looks_like_ohlcv(table.header)
        if self.pipeline is not None and ohlcv:
            return self.pipeline.window(table, self.seq_len)
        if ohlcv and not embeddings:
            raise InputError(
                f"This looks like raw OHLCV prices, but model '{self.name}' has no feature pipeline: send "
                f"embeddings emb_0..emb_{self.input_size - 1} and last_price.",
                reason="ohlcv_unsupported",
            )
        if self.pipeline is not None and not embeddings and prices.has_date_column(table.header):
            raise InputError(
                f"Model '{self.name}' needs daily OHLCV bars (Date, Open, High, Low, Close, Volume; any case) or "
                f"embeddings emb_0..emb_{self.input_size - 1} and last_price, not one price a day: for single-price "
                "series use a model that accepts prices (its describe lists 'prices').",
                reason="ohlcv_required",
            )
        return embedding_window(table, self.input_size, self.seq_len)

    def _series_window(self, series: timeseries_api.SeriesInput) -> Window | InputError:
        if series.error is not None:
            return series.error
        if not isinstance(self.pipeline, ClosePipeline):
            return timeseries_api.series_error(
                f"inputs[{series.index}]",
                f"model '{self.name}' does not forecast from one price a day",
                "prices_unsupported",
            )
        try:
            return self.pipeline.window_from_prices(series.prices, self.seq_len, f"inputs[{series.index}].series")
        except InputError as exc:
            return exc

    def _forward_isolated(self, windows: dict) -> tuple[dict, dict[object, Outcome]]:
        """Each window's raw outputs, from one batched forward: ({slot: raw}, {slot: failure}).

        If the batched forward fails (out of memory, a bug a single window triggers), each
        window is forwarded alone, so only the windows that fail on their own get a failure.
        """
        if not windows:
            return {}, {}
        try:
            return dict(zip(windows, self.forward(list(windows.values())), strict=True)), {}
        except Exception as exc:
            if len(windows) == 1:
                return {}, {slot: Outcome.from_error(exc) for slot in windows}
            log.warning(
                "batched forward failed (%s: %s); retrying its %d windows one by one",
                type(exc).__name__,
                exc,
                len(windows),
            )
        raw, failures = {}, {}
        for slot, window in windows.items():
            try:
                raw[slot] = self.forward([window])[0]
            except Exception as exc:
                failures[slot] = Outcome.from_error(exc)
        return raw, failures

    def forward(self, windows: list[Window]) -> np.ndarray:
        """Windows -> the network's raw outputs (len(windows), output_size), one batched forward."""
        batch = torch.from_numpy(np.stack([w.embeddings for w in windows])).to(self.device)
        with torch.inference_mode(), native.precision(self.precision):
            return self.model(batch).float().cpu().numpy()

    def _quantile_returns(self, raw: dict, windows: dict) -> dict:
        """For a quantile model, every window's raw outputs -> its (K, Q) quantile returns, in one
        call for the whole batch; a point model's outputs pass through."""
        if self.quantile_head is None or not raw:
            return raw
        slots = list(raw)
        sigma = np.array([windows[slot].scale for slot in slots])
        returns = self.quantile_head.returns(np.stack([raw[slot] for slot in slots]), sigma)
        return dict(zip(slots, returns, strict=True))

    def _answer(self, i: int, parsed: _Parsed, raw: dict, failures: dict) -> Outcome:
        """The request's outcome from its windows' outputs."""
        bodies: list[dict | InputError | Outcome] = []
        for k, window in enumerate(parsed.windows):
            if isinstance(window, InputError):
                bodies.append(window)
            elif (i, k) in failures:
                bodies.append(failures[(i, k)])
            else:
                bodies.append(self._forecast(raw[(i, k)], window, parsed.options))
        if parsed.document is None:
            body = bodies[0]
            if isinstance(body, Outcome):
                return body
            return Outcome.from_error(body) if isinstance(body, InputError) else Outcome.forecast(body)
        return self._document_outcome(parsed.document, bodies)

    def _forecast(self, out: np.ndarray, window: Window, chosen: options.ForecastOptions) -> dict | InputError:
        """``out``: a point model's returns (K,), or a quantile model's quantile returns (K, Q)."""
        try:
            if self.quantile_head is None:
                return forecast_response(out, window.current_price, self.name, self.version, chosen.horizon)
            levels = self.quantile_head.levels
            by_level = {lv: out[:, levels.index(lv)] for lv in chosen.levels}
            point = out[:, self.quantile_head.median_index]
            return forecast_response(point, window.current_price, self.name, self.version, chosen.horizon, by_level)
        except InputError as exc:
            return exc

    def _document_outcome(self, document: timeseries_api.TimeSeriesRequest, bodies: list) -> Outcome:
        outputs = []
        for series, body in zip(document.inputs, bodies, strict=True):
            if isinstance(body, Outcome):  # this series' forward failed alone
                error = InputError(body.body["error"], status=body.status, reason=body.reason)
                outputs.append(timeseries_api.output(series, None, error))
            elif isinstance(body, InputError):
                outputs.append(timeseries_api.output(series, None, body))
            else:
                outputs.append(timeseries_api.output(series, body, None))
        return Outcome.forecast(timeseries_api.response(document, self.name, outputs))

    def describe(self) -> dict:
        """What an operator needs to know about the served model (TorchServe's describe)."""
        config = self.loaded.config
        if isinstance(self.pipeline, ClosePipeline):
            accepts = ["prices", "ohlcv", "timeseries_json"]
        else:
            accepts = ["embeddings", "ohlcv"] if self.pipeline else ["embeddings"]
        return {
            "model": self.name,
            "model_version": self.version,
            "config": config.to_dict(),
            "declared_config": config.declared,
            "block_pattern": config.block_pattern,
            "seq_len": self.seq_len,
            "rows_needed": self.rows_needed,
            "predicted_steps": self.steps,
            "quantiles": list(self.levels) if self.levels else None,
            "parameter_count": self.model.parameter_count(),
            "device": str(self.device),
            "native_kernel": native.variant() if self.device.type == "cpu" else None,
            "precision": self.precision,
            "torch_threads": torch.get_num_threads(),
            "checkpoint_sha256": self.loaded.sha256,
            "config_disagreements": list(self.loaded.warnings),
            "accepts": accepts,
            "metadata": self.loaded.metadata,
        }


def _pipeline(state: dict | None) -> FeaturePipeline | ClosePipeline | None:
    """The feature pipeline a checkpoint names, by kind."""
    if not state:
        return None
    if state.get("kind") == close_features.KIND:
        return ClosePipeline.from_state(state)
    return FeaturePipeline.from_state(state)


def _content_type(path: Path) -> str | None:
    """A ``.json`` file is a time-series document; anything else is read as CSV."""
    return timeseries_api.CONTENT_TYPE if Path(path).suffix.lower() == ".json" else None
