"""Heads: the network's raw outputs -> forecasts in each series' own units.

A point head (the platform's checkpoints, ``sp500_xlstm``):

    raw (B, K): simple returns -> values anchor * (1 + r) for steps 1..K

A quantile head (``alm_quantiles``; the checkpoint's ``quantile_head``):

    raw (B, K*Q) -> per step: the median, plus cumulative softplus steps above and below it
                 -> (B, K, Q) standardised quantiles, increasing along Q by construction
                 -> + calibration offsets (K, Q), then a running maximum along Q (still
                    non-crossing whatever the offsets)
                 -> changes z * sigma * sqrt(h) (scaling.py) -> values through the series' kind

``sigma`` is the window's volatility (`close_features.ClosePipeline`). The offsets are the
per-step, per-level recalibration fitted on a span after training (`train/quantile_training.py`):
for level q, the q-quantile of (true - predicted) standardised changes there, so that each
level's coverage on that span is q. The median level is the point forecast.

The quantile construction has two backends side by side, tested against each other
(tests/test_quantiles.py): `monotone` in torch for training (gradients), `QuantileHead.standardised`
in float64 numpy for serving (at serving sizes a handful of numpy calls cost far less than the
equivalent small torch operations).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from alm_forecaster import scaling
from alm_forecaster.contract import Window
from alm_forecaster.errors import CheckpointError
from alm_forecaster.kinds import DEFAULT as DEFAULT_KIND
from alm_forecaster.kinds import KINDS, SeriesKind


@dataclass(frozen=True)
class PointHead:
    """A network that predicts the simple return of each of its ``steps`` steps."""

    steps: int
    levels: tuple[float, ...] = ()
    kinds: tuple[str, ...] = (DEFAULT_KIND,)

    def forecast(
        self, raw: np.ndarray, windows: list[Window], kinds: list[SeriesKind]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(point (B, K), no quantiles (B, K, 0)): ``anchor * (1 + r)``."""
        anchors = np.array([w.current_price for w in windows])[:, None]
        point = anchors * (1.0 + np.asarray(raw, dtype=np.float64))
        return point, np.empty((*point.shape, 0))


def head_for(quantile_head: QuantileHead | None, outputs: int) -> PointHead | QuantileHead:
    """A checkpoint's head: its quantile head, else a point head of its ``outputs`` steps."""
    return quantile_head if quantile_head is not None else PointHead(outputs)


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
    """The levels a model predicts and its calibration offsets per series kind (standardised units).

    ``offsets`` maps a kind's name to its (K, Q) offsets: the kinds the model serves (a network
    trained on prices and rates shares its weights and is calibrated per kind)."""

    levels: tuple[float, ...]
    offsets: dict[str, np.ndarray]  # kind name -> (K, Q)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.offsets)

    @property
    def steps(self) -> int:
        return int(next(iter(self.offsets.values())).shape[0])

    @property
    def median_index(self) -> int:
        return self.levels.index(0.5)

    def standardised(self, raw: torch.Tensor | np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
        """Raw outputs (B, K*Q) -> calibrated, non-crossing standardised quantiles (B, K, Q): the
        construction of `monotone`, in float64 numpy, plus the calibration ``offsets`` ((K, Q) or
        (B, K, Q); none: uncalibrated)."""
        raw = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
        raw = raw.astype(np.float64).reshape(raw.shape[0], -1, len(self.levels))
        mid = len(self.levels) // 2
        center = raw[..., mid : mid + 1]
        up = np.cumsum(np.logaddexp(0.0, raw[..., mid + 1 :]), axis=-1)
        down = np.cumsum(np.logaddexp(0.0, raw[..., :mid][..., ::-1]), axis=-1)[..., ::-1]
        z = np.concatenate([center - down, center, center + up], axis=-1)
        if offsets is not None:
            z = z + (offsets if offsets.ndim == 3 else offsets[None])
        return np.maximum.accumulate(z, axis=-1)

    def forecast(
        self, raw: np.ndarray, windows: list[Window], kinds: list[SeriesKind]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(point (B, K), quantiles (B, K, Q)) in the series' units, for ``windows`` of series of ``kinds``."""
        offsets = np.stack([self.offsets[kind.name] for kind in kinds])
        changes = scaling.changes(self.standardised(raw, offsets), np.array([w.scale for w in windows]))
        anchors = np.array([w.current_price for w in windows])[:, None, None]
        values = np.empty_like(changes)
        for kind in set(kinds):
            rows = np.array([k is kind for k in kinds])
            values[rows] = kind.values(anchors[rows], changes[rows])
        return values[..., self.median_index], values

    def state(self) -> dict:
        """``offsets``: the price offsets (the format's first key); ``kind_offsets``: every other kind's."""
        tensors = {name: torch.from_numpy(np.ascontiguousarray(o)) for name, o in self.offsets.items()}
        state: dict = {"levels": list(self.levels)}
        if DEFAULT_KIND in tensors:
            state["offsets"] = tensors.pop(DEFAULT_KIND)
        if tensors:
            state["kind_offsets"] = tensors
        return state

    @classmethod
    def from_state(cls, state: dict, outputs: int) -> QuantileHead:
        """From a checkpoint's ``quantile_head``; shapes checked against the network's ``outputs``."""
        if not isinstance(state, dict):
            raise CheckpointError(f"quantile_head must be a dict, found {type(state).__name__}.")
        levels = state.get("levels")
        if not (isinstance(levels, list) and levels and all(isinstance(v, float) and 0 < v < 1 for v in levels)):
            raise CheckpointError("quantile_head: 'levels' must be a list of floats in (0, 1).")
        if levels != sorted(set(levels)) or len(levels) % 2 == 0 or levels[len(levels) // 2] != 0.5:
            raise CheckpointError(f"quantile_head: levels {levels} must increase, be odd in number and centre on 0.5.")
        if outputs % len(levels):
            raise CheckpointError(
                f"quantile_head: the network's {outputs} outputs are not steps x {len(levels)} levels."
            )
        others = state.get("kind_offsets", {})
        if not isinstance(others, dict) or not set(others) <= set(KINDS) - {DEFAULT_KIND}:
            raise CheckpointError(
                f"quantile_head: 'kind_offsets' must map series kinds ({', '.join(KINDS)}) to offsets."
            )
        shape = (outputs // len(levels), len(levels))
        given = [(DEFAULT_KIND, "offsets", state.get("offsets"))] if "offsets" in state or not others else []
        offsets = {}
        for name, key, value in given + [(n, f"kind_offsets.{n}", v) for n, v in others.items()]:
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                raise CheckpointError(f"quantile_head: {key!r} must be a {shape} tensor.")
            if not torch.isfinite(value).all():
                raise CheckpointError(f"quantile_head: {key!r} must be finite.")
            offsets[name] = value.detach().to(torch.float64).numpy().copy()
        return cls(tuple(levels), offsets)
