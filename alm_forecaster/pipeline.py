"""The model side of serving: every window of a batch -> one forward -> a `Forecast` per request.

jobs (decoded requests: request.py) -> the windows of all their series
-> one batched forward (model.py; the compiled kernel in native/ or PyTorch), retried window
   by window if the batch fails, so only a window that fails alone fails
-> the head, once for the batch (heads.py): values per step (and level) in each series' units
-> per job: its series' rows, cut to its options (steps, levels); a non-finite output refuses
   that series alone -> Forecast (forecast.py)
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from alm_forecaster import native
from alm_forecaster.checkpoint import LoadedCheckpoint
from alm_forecaster.contract import Window
from alm_forecaster.errors import InputError, RequestError, fault
from alm_forecaster.forecast import Forecast
from alm_forecaster.heads import PointHead, QuantileHead, head_for
from alm_forecaster.inputs import model_input
from alm_forecaster.request import Job

log = logging.getLogger(__name__)

#: A window's place in a batch: (job index, series index).
Slot = tuple[int, int]


class Pipeline:
    """A validated checkpoint on a device, with what it reads (`input`) and its `head`."""

    def __init__(
        self,
        loaded: LoadedCheckpoint,
        name: str,
        version: str,
        device: torch.device,
        seq_len: int,
        precision: str = "fp32",
    ) -> None:
        self.name = name
        self.version = version
        self.device = device
        self.seq_len = seq_len
        self.model = loaded.model.to(device).eval()
        self.precision = self._usable_precision(precision)
        self.input = model_input(loaded.feature_pipeline, name, loaded.config.input_size, seq_len)
        self.head: PointHead | QuantileHead = head_for(loaded.quantile_head, loaded.config.output_size)

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

    def run(self, jobs: dict[int, Job]) -> dict[int, Forecast]:
        """A `Forecast` per job, from one forward over every window of every job."""
        slots = {(i, k): w for i, job in jobs.items() for k, w in enumerate(job.windows) if w is not None}
        raw, failures = self._forward_isolated(slots)
        point, quantiles = {}, {}
        if raw:
            order = list(raw)
            kinds = [jobs[i].kinds[k] for i, k in order]
            p, q = self.head.forecast(np.stack([raw[s] for s in order]), [slots[s] for s in order], kinds)
            point, quantiles = dict(zip(order, p, strict=True)), dict(zip(order, q, strict=True))
        return {i: self._forecast(i, job, point, quantiles, failures) for i, job in jobs.items()}

    def forward(self, windows: list[Window]) -> np.ndarray:
        """Windows -> the network's raw outputs (len(windows), output_size), one batched forward."""
        batch = torch.from_numpy(np.stack([w.embeddings for w in windows])).to(self.device)
        with torch.inference_mode(), native.precision(self.precision):
            return self.model(batch).float().cpu().numpy()

    def _forward_isolated(self, windows: dict[Slot, Window]) -> tuple[dict, dict[Slot, RequestError]]:
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
                return {}, {slot: fault(exc) for slot in windows}
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
                failures[slot] = fault(exc)
        return raw, failures

    def _forecast(self, i: int, job: Job, point: dict, quantiles: dict, failures: dict) -> Forecast:
        """Job ``i``'s forecast: its series' rows cut to its options; the errors of the rest."""
        count, steps = len(job.windows), job.options.horizon
        columns = [self.head.levels.index(level) for level in job.options.levels]
        out_point = np.full((count, steps), np.nan)
        out_quantiles = np.full((count, steps, len(columns)), np.nan)
        errors = list(job.errors)
        anchors = np.array([np.nan if w is None else w.current_price for w in job.windows])
        for k in range(count):
            if (i, k) in failures:
                errors[k] = failures[(i, k)]
        done = np.array([k for k in range(count) if (i, k) in point], dtype=np.int64)
        if len(done):  # every series at once: a per-series check costs more than its numbers
            p = np.stack([point[(i, k)][:steps] for k in done])
            q = np.stack([quantiles[(i, k)][:steps] for k in done])[:, :, columns]
            finite = np.isfinite(p).all(axis=1) & np.isfinite(q).all(axis=(1, 2))
            out_point[done[finite]], out_quantiles[done[finite]] = p[finite], q[finite]
            for k in done[~finite]:
                errors[k] = InputError(
                    "The model produced a non-finite forecast for this window; its inputs are probably far "
                    "outside the range the model was trained on.",
                    reason="non_finite_output",
                )
        return Forecast(
            job.names,
            job.kinds,
            anchors,
            out_point,
            job.options.levels,
            out_quantiles,
            tuple(errors),
            self.name,
            self.version,
        )
