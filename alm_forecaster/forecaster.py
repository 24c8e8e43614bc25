"""A loaded model ready to serve: the service loop. Requests -> one `Outcome` each, one forward per batch.

    Request (body, content type, options)                                    request.py
    -> decoded by its protocol, each request on its own:
         CSV  (text/csv, multipart, octet-stream; the seed's contract)        csv_protocol.py
         JSON (application/json: KServe's time-series ForecastRequest)        kserve.py
       into a Job: its series' windows (inputs.py) or their refusals, its options
    -> every window of every job through one batched forward, then the head  pipeline.py
    -> a Forecast per job (forecast.py), encoded by the job's protocol -> Outcome (outcome.py)

Each request of a batch (and each series of a JSON request) succeeds or fails on its own and
every request ends in one `Outcome`: a forecast, the refusal of a bad request, or the failure
of that request alone; its batch mates still get their forecasts. The TorchServe handler, the
offline CLI and the backtest all go through `Forecaster.predict`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import threadpoolctl
import torch

from alm_forecaster import book_csv, csv_protocol, kserve, native
from alm_forecaster.checkpoint import LoadedCheckpoint, load_checkpoint
from alm_forecaster.contract import Window
from alm_forecaster.device import select_device
from alm_forecaster.errors import InputError
from alm_forecaster.kinds import PRICE
from alm_forecaster.outcome import Outcome
from alm_forecaster.pipeline import Pipeline
from alm_forecaster.request import Job, Request, WireProtocol

log = logging.getLogger(__name__)

__all__ = ["Forecaster", "Request", "Timings", "configure_threads"]


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads and numpy's BLAS threads deliberately: the argument,
    ``ALM_FORECASTER_THREADS``, or the number of cores this process may use. Returns the number set.

    numpy's BLAS would otherwise start a thread per core in every worker: waking them for the
    book engine's small products (exposures x paths, once a step) cost more than the products
    and slowed the rest of each step (BENCHMARKS.md, books).
    """
    count = threads or int(os.environ.get("ALM_FORECASTER_THREADS", "0")) or len(os.sched_getaffinity(0))
    torch.set_num_threads(count)
    threadpoolctl.threadpool_limits(count, user_api="blas")
    return count


@dataclass
class Timings:
    """Milliseconds spent in each stage of the last `Forecaster.predict` call."""

    parse_ms: float = 0.0
    forward_ms: float = 0.0
    response_ms: float = 0.0
    stages: dict = field(default_factory=dict)


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
        self.pipeline = Pipeline(loaded, name, version, self.device, self.seq_len, precision)
        self.model = self.pipeline.model
        self.precision = self.pipeline.precision

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

    @property
    def head(self):  # noqa: ANN201 - heads.PointHead | heads.QuantileHead
        """How the network's outputs become forecasts (steps, levels)."""
        return self.pipeline.head

    @property
    def levels(self) -> tuple[float, ...] | None:
        """The quantile levels the model predicts (None for a point model)."""
        return self.head.levels or None

    @property
    def steps(self) -> int:
        return self.head.steps

    @property
    def rows_needed(self) -> int:
        """Rows a request must have: the window, plus the pipeline's lookback for raw prices."""
        return self.pipeline.input.rows_needed

    def predict_files(
        self, paths: list[Path], batch_size: int = 64, kind: str | None = None
    ) -> Iterator[tuple[Path, Outcome]]:
        """(path, outcome) per file, in order, ``batch_size`` files per forward; a file that
        cannot be read is refused without reaching the model; ``kind``: the CSV files' series kind."""
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
            requests = [Request(body, _content_type(chunk[i]), kind=kind) for i, body in payloads.items()]
            outcomes.update(zip(payloads, self.predict(requests), strict=True))
            yield from ((path, outcomes[i]) for i, path in enumerate(chunk))

    def predict(
        self, requests: list[Request | bytes | bytearray | str], timings: Timings | None = None
    ) -> list[Outcome]:
        """One `Outcome` per request, in order. Nothing a request contains or causes escapes:
        each request is decoded on its own and every valid window of the batch shares one forward."""
        timings = timings if timings is not None else Timings()
        start = time.perf_counter()
        outcomes: dict[int, Outcome] = {}
        jobs: dict[int, Job] = {}
        for i, request in enumerate(requests):
            request = request if isinstance(request, Request) else Request(request)
            protocol = self.protocol(request)
            try:
                jobs[i] = self.decode(request)
            except Exception as exc:
                outcomes[i] = protocol.error(exc)
        decoded = time.perf_counter()
        forecasts = self.pipeline.run(jobs)
        forwarded = time.perf_counter()
        for i, job in jobs.items():
            try:
                outcomes[i] = job.protocol.encode(job, forecasts[i])
            except Exception as exc:
                outcomes[i] = job.protocol.error(exc)
        done = time.perf_counter()
        timings.parse_ms = (decoded - start) * 1e3
        timings.forward_ms = (forwarded - decoded) * 1e3
        timings.response_ms = (done - forwarded) * 1e3
        return [outcomes[i] for i in range(len(requests))]

    def protocol(self, request: Request) -> WireProtocol:
        """The protocol a request speaks: KServe's JSON document, a CSV book, or a CSV."""
        if kserve.is_json(request.body, request.content_type):
            return kserve
        return book_csv if request.scenario else csv_protocol

    def decode(self, request: Request) -> Job:
        """A request -> its job, by its protocol; raises `InputError` naming what is wrong with it."""
        return self.protocol(request).decode(request, self.pipeline)

    def parse(self, payload: bytes | bytearray | str) -> Window:
        """A CSV body -> its validated window; raises `InputError` naming the problem."""
        return self.pipeline.input.csv_window(payload, PRICE)

    def forward(self, windows: list[Window]) -> np.ndarray:
        """Windows -> the network's raw outputs (len(windows), output_size), one batched forward."""
        return self.pipeline.forward(windows)

    def describe(self) -> dict:
        """What an operator needs to know about the served model (TorchServe's describe)."""
        config = self.loaded.config
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
            "series_kinds": list(self.head.kinds),
            "parameter_count": self.model.parameter_count(),
            "device": str(self.device),
            "native_kernel": native.variant() if self.device.type == "cpu" else None,
            "precision": self.precision,
            "torch_threads": torch.get_num_threads(),
            "checkpoint_sha256": self.loaded.sha256,
            "config_disagreements": list(self.loaded.warnings),
            "accepts": list(self.pipeline.input.accepts),
            "metadata": self.loaded.metadata,
        }


def _content_type(path: Path) -> str | None:
    """A ``.json`` file is a time-series document; anything else is read as CSV."""
    return kserve.CONTENT_TYPE if Path(path).suffix.lower() == ".json" else None
