"""Quantile forecasts: the network's raw outputs -> non-crossing, calibrated return quantiles.

    raw (B, K*Q) -> per step: the median, plus cumulative softplus steps above and below it
                 -> (B, K, Q) standardised quantiles, increasing along Q by construction
                 -> + calibration offsets (K, Q), then a running maximum along Q (still
                    non-crossing whatever the offsets)
                 -> simple returns exp(sigma * sqrt(h) * z) - 1 for steps h = 1..K

``sigma`` is the window's volatility (`close_features.ClosePipeline`). The offsets are the
per-step, per-level recalibration fitted on a span after training (`train/quantile_training.py`):
for level q, the q-quantile of (true - predicted) standardised returns there, so that each
level's coverage on that span is q. The median level is the point forecast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from alm_forecaster.errors import CheckpointError


def monotone(raw: torch.Tensor, levels: int) -> torch.Tensor:
    """(B, K*Q) -> (B, K, Q), increasing along the last axis; Q is odd, the middle is the median."""
    raw = raw.reshape(raw.shape[0], -1, levels)
    mid = levels // 2
    center = raw[..., mid : mid + 1]
    up = torch.cumsum(torch.nn.functional.softplus(raw[..., mid + 1 :]), dim=-1)
    down = torch.cumsum(torch.nn.functional.softplus(raw[..., :mid].flip(-1)), dim=-1).flip(-1)
    return torch.cat([center - down, center, center + up], dim=-1)


@dataclass(frozen=True)
class QuantileHead:
    """The levels a model predicts and its calibration offsets (standardised units)."""

    levels: tuple[float, ...]
    offsets: np.ndarray  # (K, Q)

    @property
    def steps(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def median_index(self) -> int:
        return self.levels.index(0.5)

    def standardised(self, raw: torch.Tensor | np.ndarray) -> np.ndarray:
        """Raw outputs (B, K*Q) -> calibrated, non-crossing standardised quantiles (B, K, Q).

        The same construction as `monotone`, in float64 numpy: at serving sizes a handful of
        numpy calls cost far less than the equivalent small torch operations."""
        raw = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        raw = raw.astype(np.float64).reshape(raw.shape[0], -1, len(self.levels))
        mid = len(self.levels) // 2
        center = raw[..., mid : mid + 1]
        up = np.cumsum(np.logaddexp(0.0, raw[..., mid + 1 :]), axis=-1)
        down = np.cumsum(np.logaddexp(0.0, raw[..., :mid][..., ::-1]), axis=-1)[..., ::-1]
        z = np.concatenate([center - down, center, center + up], axis=-1) + self.offsets[None]
        return np.maximum.accumulate(z, axis=-1)

    def returns(self, raw: torch.Tensor | np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """Simple returns (B, K, Q) at the levels, for windows whose volatility is ``sigma`` (B,)."""
        z = self.standardised(raw)
        scale = np.asarray(sigma, dtype=np.float64)[:, None] * np.sqrt(np.arange(1, self.steps + 1))[None, :]
        return np.expm1(z * scale[..., None])

    def state(self) -> dict:
        return {"levels": list(self.levels), "offsets": torch.from_numpy(np.ascontiguousarray(self.offsets))}

    @classmethod
    def from_state(cls, state: dict, outputs: int) -> QuantileHead:
        """From a checkpoint's ``quantile_head``; shapes checked against the network's ``outputs``."""
        if not isinstance(state, dict):
            raise CheckpointError(f"quantile_head must be a dict, found {type(state).__name__}.")
        levels, offsets = state.get("levels"), state.get("offsets")
        if not (isinstance(levels, list) and levels and all(isinstance(v, float) and 0 < v < 1 for v in levels)):
            raise CheckpointError("quantile_head: 'levels' must be a list of floats in (0, 1).")
        if levels != sorted(set(levels)) or len(levels) % 2 == 0 or levels[len(levels) // 2] != 0.5:
            raise CheckpointError(f"quantile_head: levels {levels} must increase, be odd in number and centre on 0.5.")
        if outputs % len(levels):
            raise CheckpointError(
                f"quantile_head: the network's {outputs} outputs are not steps x {len(levels)} levels."
            )
        steps = outputs // len(levels)
        if not isinstance(offsets, torch.Tensor) or tuple(offsets.shape) != (steps, len(levels)):
            raise CheckpointError(f"quantile_head: 'offsets' must be a ({steps}, {len(levels)}) tensor.")
        if not torch.isfinite(offsets).all():
            raise CheckpointError("quantile_head: 'offsets' must be finite.")
        return cls(tuple(levels), offsets.detach().to(torch.float64).numpy().copy())
