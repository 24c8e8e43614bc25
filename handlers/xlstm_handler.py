"""TorchServe handler for the ALM xLSTM forecaster: a thin adapter around `alm_forecaster`.

Everything that knows about CSVs, windows, the model and prices lives in the core package
(`alm_forecaster`, which never imports TorchServe and travels inside the .mar). This file only
translates between TorchServe's batch of requests and `Forecaster.predict`, in the order
TorchServe calls it:

* ``initialize`` (once per worker): load the archive's checkpoint into a `Forecaster`;
* ``handle`` (once per batch): take each request's CSV from the multipart field ``data`` or
  ``file``, or from the raw body (``Content-Type: text/csv`` or ``application/octet-stream``),
  as bytes or str, or its JSON document (``application/json``: KServe's time-series forecast
  protocol, many series per request), with its options (headers ``X-Forecast-Horizon``,
  ``X-Forecast-Quantiles`` and ``X-Series-Kind``, or multipart fields ``horizon``, ``quantiles``
  and ``kind``; a JSON document carries its own); send all of them through ONE
  ``Forecaster.predict`` call (one forward); answer each request with its own `Outcome`: 200
  with the forecast, 400/422 with ``{"error": "<message>", "code": <status>}`` for bad input,
  500 (or 507 when out of memory) for an unexpected failure of that request alone. Nothing
  raised for one request escapes ``handle``: a bad request never fails its batch mates, and
  never kills or restarts the worker.

TorchServe takes as the handler the one class *defined* in this module (its model loader
keeps the classes whose ``__module__`` is this module; imported ones such as `Outcome` do not
count), and it would take a module-level function named ``handle`` instead of the class: so
this module defines one class and no ``handle`` function.

Metrics (declared in the repository's metrics_config.yaml, which config.properties names; only
declared metrics reach TorchServe's Prometheus endpoint), labelled ModelName, ModelVersion and
Level="Model":

* ``ForecastsServed`` (counter): one per request answered with a forecast;
* ``BooksServed`` and ``ScenarioPaths`` (counters): books answered, and the paths simulated for them;
* ``RequestsRejected`` (counter, ``Reason``): one per request without a forecast, by its
  outcome's reason (missing_columns, too_few_rows, bad_value, encoding, no_payload, ...,
  ``internal`` for an unexpected failure, ``out_of_memory``);
* ``ParseTime``, ``ForwardTime``, ``ResponseTime`` (gauges, ms): the stages of the last batch;
* ``StageSeconds`` (histogram, ``Stage``: decode, forward, encode, handler): each request observes
  its batch's stage times, so a p99 can be read from Prometheus.

Archive YAML keys read here (``handler:`` section, all optional)::

    handler:
      threads: 1        # torch intra-op threads of this worker
      seq_len: 20       # window length; default: the checkpoint's (20 for every known one)
      device: auto      # auto | cpu | cuda | cuda:N | mps; auto = the GPU TorchServe assigned
      precision: fp32   # fp32 (exact) | bf16 (opt-in: bfloat16 weights on AVX512-BF16 CPUs;
                        # elsewhere the worker warns and serves fp32)
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from http import HTTPStatus
from pathlib import Path

import torch
from ts.metrics.metric_cache_errors import MetricsCacheKeyError
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler

import alm_forecaster
from alm_forecaster import options
from alm_forecaster.book import CSV_OPTIONS as CSV_BOOK_OPTIONS
from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.device import select_device
from alm_forecaster.errors import INTERNAL, MALFORMED, CheckpointError, InputError
from alm_forecaster.forecaster import Forecaster, Request, Timings, configure_threads
from alm_forecaster.kserve import CONTENT_TYPE as JSON_CONTENT_TYPE
from alm_forecaster.native import PRECISIONS
from alm_forecaster.outcome import Outcome

log = logging.getLogger(__name__)

# TorchServe's worker decodes an application/json body with json.loads before the handler sees
# it (ts/protocol/otf_message_handler.py reads this variable at every request): for a request
# of 1,000 series that costs more than the forward. The core decodes it instead
# (alm_forecaster/json_limits.py: orjson, with json.loads's answer for anything orjson refuses).
os.environ["TS_DECODE_INPUT_REQUEST"] = "false"

#: Where TorchServe puts a request's content: multipart fields ``data``/``file``, raw ``body``.
PAYLOAD_KEYS = ("data", "file", "body")

HOW_TO_SEND = (
    "send the CSV as a multipart form field 'data' or 'file' (curl -F data=@prices.csv) or as the raw "
    "body with 'Content-Type: text/csv' or 'application/octet-stream' (curl -H 'Content-Type: text/csv' "
    "--data-binary @prices.csv)"
)


class XLSTMHandler(BaseHandler):
    """One `Forecaster` per worker: TorchServe calls `initialize` once, then `handle` per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.forecaster: Forecaster | None = None
        self.settings: dict = {}
        self.serving: dict = {}

    def initialize(self, context) -> None:
        """Load the archive's checkpoint; a failure is logged as one line that names it."""
        self.context = context
        self.manifest = context.manifest
        name = context.model_name
        version = str(self.manifest.get("model", {}).get("modelVersion", "1.0"))
        try:
            self._load(context, name, version)
        except CheckpointError as exc:
            log.error("Model %s %s cannot be served: checkpoint refused: %s", name, version, exc)
            raise
        except Exception as exc:
            log.error("Model %s %s cannot be served: %s: %s", name, version, type(exc).__name__, exc)
            raise

    def _load(self, context, name: str, version: str) -> None:
        properties = context.system_properties
        model_yaml = getattr(context, "model_yaml_config", None) or {}
        self.settings = handler_settings(model_yaml)
        threads = configure_threads(self.settings["threads"])
        self.device = choose_device(self.settings["device"], properties.get("gpu_id"))
        serialized = self.manifest.get("model", {}).get("serializedFile")
        if not serialized:
            raise CheckpointError(f"model {name!r}: the archive has no serialized file (checkpoint).")
        self.model_pt_path = os.path.join(properties["model_dir"], serialized)
        loaded = load_checkpoint(self.model_pt_path)
        self.forecaster = Forecaster(
            loaded, name, version, self.device, self.settings["seq_len"], self.settings["precision"]
        )
        self.serving = {
            "handler": Path(__file__).name,
            "package_dir": str(Path(alm_forecaster.__file__).parent),
            "settings": self.settings,
            "batch_size": model_yaml.get("batchSize"),
            "max_batch_delay_ms": model_yaml.get("maxBatchDelay"),
            "gpu_id": properties.get("gpu_id"),
        }
        self.initialized = True
        log.info(
            "Model %s %s ready on %s with %d torch threads (seq_len %d, %s)",
            name,
            version,
            self.device,
            threads,
            self.forecaster.seq_len,
            loaded.sha256[:12],
        )

    def handle(self, data: list, context) -> list:
        """A batch of requests in, one JSON body per request out, each with its own status."""
        start = time.perf_counter()
        self.context = context
        try:
            if self._is_describe():
                return [self.describe_handle()]
        except Exception:  # describe must not take the worker down either
            log.exception("describe failed")
            return [json.dumps({"error": "describe failed; see the model log", "code": INTERNAL})]
        outcomes, timings = self.forecast(data)
        responses = self.respond(outcomes, context)
        self.record(outcomes, timings)
        handler_ms = (time.perf_counter() - start) * 1000
        self.observe(len(data), timings, handler_ms)
        try:
            context.metrics.add_time("HandlerTime", round(handler_ms, 2), None, "ms")
        except Exception:  # metrics are best effort
            log.debug("could not record HandlerTime", exc_info=True)
        return responses

    def describe_handle(self) -> dict:
        """``GET /models/<name>?customized=true`` shows this as ``customizedMetadata``."""
        return {**self.forecaster.describe(), "serving": self.serving}

    def forecast(self, data: list) -> tuple[list[Outcome], Timings | None]:
        """One `Outcome` per request, in order, and the stage times of the batch's
        `Forecaster.predict` (None when it did not run)."""
        outcomes: dict[int, Outcome] = {}
        payloads: dict[int, Request] = {}
        for i, request in enumerate(data):
            try:
                payloads[i] = extract_request(request, self._headers(i))
            except Exception as exc:
                outcomes[i] = Outcome.from_error(exc)
        timings = Timings() if payloads else None
        if payloads:
            try:
                outcomes.update(zip(payloads, self.forecaster.predict(list(payloads.values()), timings), strict=True))
            except Exception as exc:  # predict isolates each request's failures; this guards the batch anyway
                outcomes.update((i, Outcome.from_error(exc)) for i in payloads)
                timings = None
        return [outcomes[i] for i in range(len(data))], timings

    def _headers(self, idx: int) -> dict[str, str]:
        """Request ``idx``'s headers, names in lower case (HTTP names are case-insensitive)."""
        try:
            headers = self.context.get_all_request_header(idx) or {}
        except Exception:  # a context without request processors (tests, describe)
            return {}
        return {str(k).lower(): v.decode() if isinstance(v, bytes) else str(v) for k, v in headers.items()}

    def respond(self, outcomes: list[Outcome], context) -> list[bytes]:
        """Outcomes -> JSON bodies, with each request's status and content type set."""
        for idx, outcome in enumerate(outcomes):
            if not outcome.ok:
                verdict = "failed" if outcome.status >= INTERNAL else "refused"
                log.info("request %d %s (%d %s): %s", idx, verdict, outcome.status, outcome.reason, outcome.message)
            try:
                context.set_response_status(outcome.status, HTTPStatus(outcome.status).phrase, idx)
                context.set_response_content_type(idx, "application/json")
            except Exception:
                log.warning("could not set the response status of request %d", idx, exc_info=True)
        return [outcome.json() for outcome in outcomes]

    def record(self, outcomes: list[Outcome], timings: Timings | None) -> None:
        """The batch's domain metrics: counts by outcome, and the stage times if it was predicted."""
        served = sum(outcome.ok for outcome in outcomes)
        rejected = Counter(outcome.reason for outcome in outcomes if not outcome.ok)
        if served:
            self.emit(MetricTypes.COUNTER, "ForecastsServed", served, "Count")
        books = [outcome.scenario_paths for outcome in outcomes if outcome.ok and outcome.scenario_paths]
        if books:
            self.emit(MetricTypes.COUNTER, "BooksServed", len(books), "Count")
            self.emit(MetricTypes.COUNTER, "ScenarioPaths", sum(books), "Count")
        for reason, count in sorted(rejected.items()):
            self.emit(MetricTypes.COUNTER, "RequestsRejected", count, "Count", Reason=reason)
        if timings is not None:
            for name, value in (
                ("ParseTime", timings.parse_ms),
                ("ForwardTime", timings.forward_ms),
                ("ResponseTime", timings.response_ms),
            ):
                self.emit(MetricTypes.GAUGE, name, round(value, 3), "ms")

    def observe(self, requests: int, timings: Timings | None, handler_ms: float) -> None:
        """The stage histogram: each request of the batch observes its batch's stage times."""
        stages = {"handler": handler_ms}
        if timings is not None:
            stages |= {"decode": timings.parse_ms, "forward": timings.forward_ms, "encode": timings.response_ms}
        for stage, ms in stages.items():
            for _ in range(requests):
                self.emit(MetricTypes.HISTOGRAM, "StageSeconds", ms / 1e3, "Seconds", Stage=stage)

    def emit(self, metric_type: MetricTypes, name: str, value: float, unit: str, **dimensions: str) -> None:
        """Emit one of metrics_config.yaml's model metrics, its dimensions filled by name.

        Best effort: a metrics failure never fails a request. A metric missing from the
        metrics config is emitted anyway (TorchServe drops it unless auto-detection is on).
        """
        metrics = getattr(self.context, "metrics", None)
        if metrics is None:
            return
        values = {
            "ModelName": self.context.model_name,
            "ModelVersion": self.forecaster.version if self.forecaster else "",
            "Level": "Model",
            **dimensions,
        }
        try:
            try:
                metric = metrics.get_metric(name, metric_type)
            except MetricsCacheKeyError:
                metric = metrics.add_metric_to_cache(name, unit, list(values), metric_type)
            ids = getattr(self.context, "request_ids", None)
            request_id = ",".join(map(str, ids.values())) if isinstance(ids, dict) else str(ids or "")
            metric.add_or_update(value, [str(values.get(d, "")) for d in metric.dimension_names], request_id)
        except Exception:
            log.debug("could not emit metric %s", name, exc_info=True)


def handler_settings(model_yaml_config: dict | None) -> dict:
    """The ``handler:`` section of the archive YAML, validated, with defaults filled in."""
    section = (model_yaml_config or {}).get("handler") or {}
    if not isinstance(section, dict):
        raise ValueError(f"archive config 'handler' must be a mapping, got {section!r}")
    settings = {
        "threads": section.get("threads"),
        "seq_len": section.get("seq_len"),
        "device": section.get("device") or "auto",
        "precision": section.get("precision") or "fp32",
    }
    precision = settings["precision"]
    if precision not in PRECISIONS:
        raise ValueError(f"archive config 'handler.precision' must be one of {PRECISIONS}, got {precision!r}")
    for key in ("threads", "seq_len"):
        value = settings[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"archive config 'handler.{key}' must be a positive integer, got {value!r}")
    return settings


def choose_device(preference: str, gpu_id: object) -> torch.device:
    """The device TorchServe gave this worker: its GPU with CUDA, else MPS, else CPU.

    With CUDA present but no ``gpu_id`` (``deviceType: cpu`` or no GPU given to TorchServe),
    the worker stays on the CPU, as TorchServe intended.
    """
    if str(preference).lower() != "auto":
        return select_device(str(preference))
    if torch.cuda.is_available():
        return select_device(None, int(gpu_id)) if gpu_id is not None else torch.device("cpu")
    return select_device(None)


def extract_request(request: object, headers: dict[str, str]) -> Request:
    """One request of TorchServe's batch -> its body and options; `InputError` (400) if no body."""
    if isinstance(request, (bytes, bytearray, str)):
        return Request(request, None, *_options(headers, {}))
    if not isinstance(request, dict):
        raise InputError(
            f"Unreadable request ({type(request).__name__}); {HOW_TO_SEND}.", status=MALFORMED, reason="no_payload"
        )
    json_body = (headers.get("content-type") or "").split(";")[0].strip().lower() == JSON_CONTENT_TYPE
    for key in PAYLOAD_KEYS:
        if key not in request:
            continue
        value = request[key]
        if isinstance(value, dict) or json_body:  # a JSON document: decoded by TorchServe, or bytes it could not
            return Request(value, JSON_CONTENT_TYPE)
        if isinstance(value, (bytes, bytearray, str)):
            return Request(value, headers.get("content-type"), *_options(headers, request))
        raise InputError(
            f"The request field {key!r} holds {type(value).__name__}, not a CSV file; {HOW_TO_SEND}.",
            status=MALFORMED,
            reason="no_payload",
        )
    seen = ", ".join(repr(str(k)) for k in request) if request else "none"
    raise InputError(
        f"No CSV found in the request (form fields received: {seen}); {HOW_TO_SEND}. A body sent without a "
        "Content-Type is form-decoded by the server and lost.",
        status=MALFORMED,
        reason="no_payload",
    )


def _options(headers: dict[str, str], fields: dict) -> tuple[object, object, object, dict[str, str] | None]:
    """(horizon, quantiles, kind, a CSV book's options or None) from the multipart fields, else
    the headers; None where not given."""

    def option(name: str, header: str) -> object:
        value = fields.get(name)
        if value is None:
            value = headers.get(header.lower())
        return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value

    found = [option(name, options.HEADERS[name]) for name in (options.HORIZON, options.QUANTILES, options.KIND)]
    scenario = {name: option(name, header) for name, header in CSV_BOOK_OPTIONS.items()}
    scenario = {name: value for name, value in scenario.items() if value is not None}
    return found[0], found[1], found[2], scenario or None
