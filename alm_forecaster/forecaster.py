"""A loaded model ready to serve: request bytes -> forecast objects, one forward per batch.

    payload bytes -> Table (table.py) -> Window (contract.py, or the feature pipeline for
    raw OHLCV) -> one batched forward (model.py) -> returns -> prices -> response (response.py)

Each request of a batch succeeds or fails on its own: a bad one becomes an `InputError` in
its slot, its batch mates still get their forecasts. The TorchServe handler and the offline
CLI both go through `Forecaster.predict`.
"""

from __future__ import annotations

import os
import time
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
from alm_forecaster.response import forecast_response
from alm_forecaster.table import decode, read_table

Result = dict | InputError


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

    def forward(self, windows: list[Window]) -> np.ndarray:
        """Windows -> predicted returns (len(windows), K), in one batched forward."""
        batch = torch.from_numpy(np.stack([w.embeddings for w in windows])).to(self.device)
        with torch.inference_mode():
            return self.model(batch).float().cpu().numpy()

    def predict(self, payloads: list[bytes | bytearray | str], timings: Timings | None = None) -> list[Result]:
        """One result per payload, in order: a response dict or the `InputError` for it."""
        timings = timings if timings is not None else Timings()
        start = time.perf_counter()
        results: list[Result | Window] = []
        for payload in payloads:
            try:
                results.append(self.parse(payload))
            except InputError as exc:
                results.append(exc)
        parsed = time.perf_counter()
        good = [i for i, r in enumerate(results) if isinstance(r, Window)]
        returns = self.forward([results[i] for i in good]) if good else np.empty((0, 0))
        forwarded = time.perf_counter()
        for row, i in enumerate(good):
            try:
                results[i] = forecast_response(returns[row], results[i].current_price, self.name, self.version)
            except InputError as exc:
                results[i] = exc
        done = time.perf_counter()
        timings.parse_ms = (parsed - start) * 1e3
        timings.forward_ms = (forwarded - parsed) * 1e3
        timings.response_ms = (done - forwarded) * 1e3
        return results

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


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads deliberately: the argument, ``ALM_FORECASTER_THREADS``, or
    the number of cores this process may use. Returns the number set."""
    count = threads or int(os.environ.get("ALM_FORECASTER_THREADS", "0")) or len(os.sched_getaffinity(0))
    torch.set_num_threads(count)
    return count
