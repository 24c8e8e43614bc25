"""Training a quantile xLSTM on single-price series: pinball loss, then per-level recalibration.

    values of each training series -> coordinates y (kinds.py: log prices) -> close_features
       (19 features/day, sigma_t)
    -> windows of seq_len days ending at t, targets z[t, h] = (y[t+h] - y[t]) / (sigma_t sqrt(h))
       (scaling.py)
    -> pooled over the series; chronological spans (K-day gaps so no target crosses a border):
         fit         < validation_start        minimise mean pinball loss (AdamW)
         validation  [validation_start, calibration_start)   early stopping
         calibration [calibration_start, holdout_start)       offsets per step and level
         held out    >= holdout_start          never read here (evaluation only)
    -> checkpoint: model_state_dict + config (+ quantile_head, feature_pipeline, metadata)

Seeded and single-threaded by default: the same data and seed give bit-identical weights.
"""

from __future__ import annotations

import copy
import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from alm_forecaster import close_features, scaling
from alm_forecaster.config import ModelConfig
from alm_forecaster.heads import QuantileHead, monotone
from alm_forecaster.kinds import KINDS, LEVEL, PRICE, SeriesKind
from alm_forecaster.model import XLSTMForecaster
from alm_forecaster.train.datasets import Series


@dataclass(frozen=True)
class QuantileTrainConfig:
    levels: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
    horizon: int = 5
    seq_len: int = 20
    hidden_size: int = 32
    num_layers: int = 1
    num_blocks: int = 2
    dropout: float = 0.1
    validation_start: str = "2010-01-01"
    calibration_start: str = "2012-01-01"
    holdout_start: str = "2015-01-01"
    # The spans of level series. The Treasury file ends in 2014: its last four years (zero
    # short rates, the 2013 sell-off) are held out; the four before them (the 2007-2008 crisis,
    # rates falling to zero) calibrate: a calibration span without zero rates over-covers the
    # short tenors, a shorter one under-covers the long ones (docs/rates-report.md).
    level_validation_start: str = "2005-01-01"
    level_calibration_start: str = "2007-01-01"
    level_holdout_start: str = "2011-01-01"
    #: A gap of more days than this between two observations splits a series in two (a tenor
    #: that was not published for years: no window or target spans the gap).
    max_gap_days: int = 10
    epochs: int = 25
    patience: int = 5
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1


@dataclass
class Spans:
    """Windows and standardised targets of one chronological span, pooled over series, with the
    kind of each window's series."""

    x: list[np.ndarray] = field(default_factory=list)
    z: list[np.ndarray] = field(default_factory=list)
    kinds: list[np.ndarray] = field(default_factory=list)

    def add(self, x: np.ndarray, z: np.ndarray, kind: str) -> None:
        self.x.append(x)
        self.z.append(z)
        self.kinds.append(np.full(len(x), kind))

    def arrays(self, kind: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All windows and targets (or those of one kind)."""
        x, z = np.concatenate(self.x), np.concatenate(self.z)
        if kind is not None:
            rows = np.concatenate(self.kinds) == kind
            x, z = x[rows], z[rows]
        return torch.from_numpy(x), torch.from_numpy(z)

    def count(self, kind: str) -> int:
        return int(sum((k == kind).sum() for k in self.kinds))


def samples(
    values: np.ndarray, lo: int, hi: int, seq_len: int, horizon: int, kind: SeriesKind = PRICE
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ending at each day in [lo, hi) whose features and targets are complete."""
    y = kind.coordinates(values)
    feats, sigma = close_features.features(y)
    z = scaling.standardised_changes(y, sigma, horizon)
    ends = np.arange(max(lo, seq_len - 1), min(hi, len(values)))
    ends = ends[np.isfinite(z[ends]).all(axis=1)]
    x = feats[ends[:, None] + np.arange(1 - seq_len, 1)[None, :]]
    keep = np.isfinite(x).all(axis=(1, 2))
    return x[keep].astype(np.float32), z[ends[keep]].astype(np.float32)


def spans_of(kind: str, cfg: QuantileTrainConfig) -> tuple[str, str, str]:
    """(validation, calibration, held-out) starts of a series kind."""
    if kind == LEVEL.name:
        return cfg.level_validation_start, cfg.level_calibration_start, cfg.level_holdout_start
    return cfg.validation_start, cfg.calibration_start, cfg.holdout_start


def segments(s: Series, max_gap_days: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(dates, values) of each stretch of ``s`` without a gap longer than ``max_gap_days``."""
    gaps = np.flatnonzero(np.diff(s.dates.astype("datetime64[D]").astype(np.int64)) > max_gap_days) + 1
    return [(d, v) for d, v in zip(np.split(s.dates, gaps), np.split(s.prices, gaps), strict=True)]


def split(series: list[Series], cfg: QuantileTrainConfig) -> dict[str, Spans]:
    """Fit, validation and calibration windows of every series (each kind on its own spans); the
    held-out span is left out."""
    spans = {name: Spans() for name in ("fit", "validation", "calibration")}
    for s in series:
        kind = KINDS[s.kind]
        for dates, values in segments(s, cfg.max_gap_days):
            pos = [int(np.searchsorted(dates, np.datetime64(d))) for d in spans_of(s.kind, cfg)]
            bounds = {"fit": (0, pos[0]), "validation": (pos[0], pos[1]), "calibration": (pos[1], pos[2])}
            for name, (lo, hi) in bounds.items():
                # a window ending at t reads targets up to t + horizon: stop horizon days before the border
                x, z = samples(values, lo, hi - cfg.horizon, cfg.seq_len, cfg.horizon, kind)
                spans[name].add(x, z, s.kind)
    return spans


def pinball_loss(quantiles: torch.Tensor, z: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    d = z.unsqueeze(-1) - quantiles
    return torch.maximum(levels * d, (levels - 1) * d).mean()


def fit(spans: dict[str, Spans], cfg: QuantileTrainConfig, log=print) -> tuple[XLSTMForecaster, dict]:
    """The network with the lowest validation pinball loss, and the training history."""
    torch.manual_seed(cfg.seed)
    x, z = spans["fit"].arrays()
    xv, zv = spans["validation"].arrays()
    model_config = ModelConfig(
        input_size=x.shape[2],
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        num_blocks=cfg.num_blocks,
        output_size=cfg.horizon * len(cfg.levels),
        dropout=cfg.dropout,
        seq_len=cfg.seq_len,
    )
    model = XLSTMForecaster(model_config)
    levels = torch.tensor(cfg.levels)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    best, best_state, stale, history = float("inf"), None, 0, []
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), cfg.batch_size):
            batch = order[i : i + cfg.batch_size]
            loss = pinball_loss(monotone(model(x[batch]), len(cfg.levels)), z[batch], levels)
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        model.eval()
        with torch.no_grad():
            validation = pinball_loss(monotone(model(xv), len(cfg.levels)), zv, levels).item()
        history.append({"epoch": epoch, "validation_pinball": validation, "seconds": time.perf_counter() - started})
        log(f"epoch {epoch:2d}: validation pinball {validation:.5f} ({history[-1]['seconds']:.1f} s)")
        if validation < best - 1e-6:
            best, best_state, stale = validation, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), {"epochs": history, "best_validation_pinball": best}


def calibrate(model: XLSTMForecaster, spans: dict[str, Spans], cfg: QuantileTrainConfig) -> QuantileHead:
    """Per series kind, step and level: the level's quantile of (true - predicted) on that kind's
    calibration span."""
    offsets = {}
    for kind in KINDS:
        if not spans["calibration"].count(kind):
            continue
        x, z = spans["calibration"].arrays(kind)
        uncalibrated = QuantileHead(cfg.levels, {kind: np.zeros((cfg.horizon, len(cfg.levels)))})
        with torch.no_grad():
            predicted = uncalibrated.standardised(model(x))
        errors = z.double().numpy()[..., None] - predicted
        offsets[kind] = np.stack(
            [[np.quantile(errors[:, h, j], q) for j, q in enumerate(cfg.levels)] for h in range(cfg.horizon)]
        )
    return QuantileHead(cfg.levels, offsets)


def train(series: list[Series], cfg: QuantileTrainConfig, log=print) -> dict:
    """The whole recipe -> a checkpoint dict (tensors and plain values: loads with weights_only=True)."""
    torch.set_num_threads(cfg.threads)
    spans = split(series, cfg)
    counts = {name: {kind: span.count(kind) for kind in KINDS} for name, span in spans.items()}
    log(f"windows: {counts}")
    model, history = fit(spans, cfg, log)
    head = calibrate(model, spans, cfg)
    config = model.config.to_dict()
    return {
        "model_state_dict": model.state_dict(),
        "config": config,
        "quantile_head": head.state(),
        "feature_pipeline": close_features.ClosePipeline().state(),
        "metadata": {
            "kind": "quantile",
            "seq_len": cfg.seq_len,
            "prediction_offset": 1,
            "trained_on": [{"name": s.name, "kind": s.kind, "sha256": s.sha256, "rows": len(s.prices)} for s in series],
            "spans": {k: v for k, v in asdict(cfg).items() if k.endswith("_start")},
            "window_counts": counts,
            "train_config": asdict(cfg),
            "history": history,
            "versions": {"torch": str(torch.__version__), "numpy": np.__version__, "python": platform.python_version()},
        },
    }
