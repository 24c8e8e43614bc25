"""A loaded model ready to serve: request bytes -> forecast objects, one forward per batch.

    payload bytes -> Table (table.py) -> Window (contract.py, or the feature pipeline for
    raw OHLCV) -> one batched forward (model.py) -> returns -> prices -> response (response.py)

Each request of a batch succeeds or fails on its own and ends in one `Outcome` (outcome.py):
a forecast, the refusal of a bad request, or the failure of that request alone; its batch
mates still get their forecasts. The TorchServe handler and the offline CLI both go through
`Forecaster.predict`.
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

from alm_forecaster import native
from alm_forecaster.checkpoint import LoadedCheckpoint, load_checkpoint
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
    ) -> None:
        self.loaded = loaded
        self.name = name
        self.version = version
        self.device = device or select_device()
        self.seq_len = seq_len or loaded.config.seq_len
        self.input_size = loaded.config.input_size
        self.model = loaded.model.to(self.device).eval()
        self.pipeline = FeaturePipeline.from_state(loaded.feature_pipeline) if loaded.feature_pipeline else None
        self.header = canonical_header(self.input_size)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        name: str | None = None,
        version: str = "1.0",
        device: torch.device | str | None = None,
        seq_len: int | None = None,
    ) -> Forecaster:
        resolved = device if isinstance(device, torch.device) else select_device(device)
        return cls(load_checkpoint(path), name or Path(path).stem, version, resolved, seq_len)

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
            outcomes.update(zip(payloads, self.predict(list(payloads.values())), strict=True))
            yield from ((path, outcomes[i]) for i, path in enumerate(chunk))

    def predict(self, payloads: list[bytes | bytearray | str], timings: Timings | None = None) -> list[Outcome]:
        """One `Outcome` per payload, in order. Nothing a request contains or causes escapes:
        each payload is parsed on its own and the valid windows share one forward."""
        timings = timings if timings is not None else Timings()
        start = time.perf_counter()
        outcomes: dict[int, Outcome] = {}
        windows: dict[int, Window] = {}
        for i, payload in enumerate(payloads):
            try:
                windows[i] = self.parse(payload)
            except Exception as exc:
                outcomes[i] = Outcome.from_error(exc)
        parsed = time.perf_counter()
        returns, failures = self._forward_isolated(windows)
        outcomes.update(failures)
        forwarded = time.perf_counter()
        for i, row in returns.items():
            outcomes[i] = self._respond(row, windows[i])
        done = time.perf_counter()
        timings.parse_ms = (parsed - start) * 1e3
        timings.forward_ms = (forwarded - parsed) * 1e3
        timings.response_ms = (done - forwarded) * 1e3
        return [outcomes[i] for i in range(len(payloads))]

    def parse(self, payload: bytes | bytearray | str) -> Window:
        """Request body -> validated window; raises `InputError` naming the problem.

        The usual request (the exact header, plain numbers) takes numpy's reader; any other,
        and every bad one, the checked path that names what is wrong.
        """
        text = decode(payload)
        window = fast_embedding_window(text, self.header, self.seq_len)
        if window is not None:
            return window
        table = read_table(text)
        ohlcv = looks_like_ohlcv(table.header)  # once per request (it normalises every column name)
        if self.pipeline is not None and ohlcv:
            return self.pipeline.window(table, self.seq_len)
        if ohlcv and not any(name.startswith("emb_") for name in table.header):
            raise InputError(
                f"This looks like raw OHLCV prices, but model '{self.name}' has no feature pipeline: send "
                f"embeddings emb_0..emb_{self.input_size - 1} and last_price.",
                reason="ohlcv_unsupported",
            )
        return embedding_window(table, self.input_size, self.seq_len)

    def _forward_isolated(self, windows: dict[int, Window]) -> tuple[dict[int, np.ndarray], dict[int, Outcome]]:
        """Each window's returns, from one batched forward: ({slot: returns}, {slot: failure}).

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
        returns, failures = {}, {}
        for slot, window in windows.items():
            try:
                returns[slot] = self.forward([window])[0]
            except Exception as exc:
                failures[slot] = Outcome.from_error(exc)
        return returns, failures

    def forward(self, windows: list[Window]) -> np.ndarray:
        """Windows -> predicted returns (len(windows), K), in one batched forward."""
        batch = torch.from_numpy(np.stack([w.embeddings for w in windows])).to(self.device)
        with torch.inference_mode():
            return self.model(batch).float().cpu().numpy()

    def _respond(self, returns: np.ndarray, window: Window) -> Outcome:
        try:
            return Outcome.forecast(forecast_response(returns, window.current_price, self.name, self.version))
        except Exception as exc:
            return Outcome.from_error(exc)

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
            "predicted_steps": config.output_size,
            "parameter_count": self.model.parameter_count(),
            "device": str(self.device),
            "native_kernel": self.device.type == "cpu" and native.is_loaded(),
            "torch_threads": torch.get_num_threads(),
            "checkpoint_sha256": self.loaded.sha256,
            "config_disagreements": list(self.loaded.warnings),
            "accepts": ["embeddings", "ohlcv"] if self.pipeline else ["embeddings"],
            "metadata": self.loaded.metadata,
        }
