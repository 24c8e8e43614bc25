"""Training an xLSTM forecaster from a daily series, into a seed-format checkpoint + metadata.

Samples: a window of ``seq_len`` embedding rows ending on day t; targets the simple returns
``price[t + offset + k] / price[t] - 1`` for k = 0..K-1 (``offset`` = ``prediction_offset``,
1 = the next trading day). The split is chronological by the window's last day: train, then
validation, then test, with ``offset + K - 1`` samples dropped before each boundary so that no
training target reaches into a later span's targets. The feature pipeline (scaler + PCA) is
fitted on the training span's rows only.

The network is trained on per-step standardised targets; the scale is folded back into the
last layer afterwards, so the saved model outputs plain returns as the serving contract says.
Seeded and deterministic: the same data, config, seed and thread count give identical weights.
"""

from __future__ import annotations

import copy
import math
import platform
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch
import tqdm
import tqdm.auto
from torch import nn

from alm_forecaster.config import ModelConfig
from alm_forecaster.model import XLSTMForecaster
from alm_forecaster.ohlcv_features import LOOKBACK, FeaturePipeline, technical_features
from alm_forecaster.train import scoring
from alm_forecaster.train.datasets import Series


@dataclass
class TrainConfig:
    input_size: int = 32
    hidden_size: int = 64
    num_layers: int = 1
    num_blocks: int = 2
    horizon: int = 5
    dropout: float = 0.1
    seq_len: int = 20
    prediction_offset: int = 1
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 1e-4
    weight_decay: float = 1e-3
    patience: int = 5
    #: The best validation epoch is chosen among epochs >= min_epochs (epoch 0 = the untrained
    #: network, which predicts the training drift); its validation loss is still recorded.
    min_epochs: int = 1
    max_grad_norm: float = 1.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    def model_config(self, input_size: int) -> ModelConfig:
        return ModelConfig(
            input_size=input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            num_blocks=self.num_blocks,
            output_size=self.horizon,
            dropout=self.dropout,
            seq_len=self.seq_len,
        )


@dataclass
class Split:
    """Sample end rows (the window's last day) of each chronological span."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def spans(self, series: Series) -> dict:
        return {
            name: {"start": series.date(int(ends[0])), "end": series.date(int(ends[-1])), "samples": int(len(ends))}
            for name, ends in (("train", self.train), ("val", self.val), ("test", self.test))
        }


@dataclass
class Prepared:
    """Everything the trainer and the evaluator need, built the same way for both."""

    embeddings: np.ndarray  # (n, D) float64, NaN before the lookback
    split: Split
    targets: np.ndarray  # (n, K) simple returns per end row (NaN where unknown)
    pipeline: FeaturePipeline | None
    first_valid: int


@dataclass
class TrainResult:
    checkpoint: dict
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0


def train(series: Series, cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Train on ``series``; returns the checkpoint dict (seed format + metadata + pipeline)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(series, cfg, progress)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train(series: Series, cfg: TrainConfig, progress: bool) -> TrainResult:
    torch.manual_seed(cfg.seed)
    prep = prepare(series, cfg)
    split = prep.split
    input_size = prep.embeddings.shape[1]
    x_train = torch.from_numpy(windows(prep.embeddings, split.train, cfg.seq_len))
    x_val = torch.from_numpy(windows(prep.embeddings, split.val, cfg.seq_len))
    y_train = prep.targets[split.train]
    mu, sigma = y_train.mean(axis=0), y_train.std(axis=0)
    sigma = np.where(sigma > 0, sigma, 1.0)
    z_train = torch.from_numpy(((y_train - mu) / sigma).astype(np.float32))
    z_val = torch.from_numpy(((prep.targets[split.val] - mu) / sigma).astype(np.float32))

    model = XLSTMForecaster(cfg.model_config(input_size))
    # Zero last layer: the untrained model predicts the training mean return (the drift), and
    # training has to earn every departure from it on the validation span.
    nn.init.zeros_(model.output_head[3].weight)
    nn.init.zeros_(model.output_head[3].bias)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    loss_fn = nn.MSELoss()
    generator = torch.Generator().manual_seed(cfg.seed)
    initial = float(loss_fn(_predict(model, x_val), z_val))
    best = (initial if cfg.min_epochs == 0 else math.inf, 0, copy.deepcopy(model.state_dict()))
    history: list[dict] = [{"epoch": 0, "train_loss": None, "val_loss": initial}]
    bar = tqdm.auto.tqdm(range(1, cfg.epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            optimiser.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_train[batch]), z_train[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimiser.step()
            total += loss.item() * len(batch)
        val_loss = float(loss_fn(_predict(model, x_val), z_val))
        history.append({"epoch": epoch, "train_loss": total / len(order), "val_loss": val_loss})
        if epoch >= cfg.min_epochs and val_loss < best[0]:
            best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
        bar.set_postfix(train=f"{total / len(order):.4f}", val=f"{val_loss:.4f}", best=best[1], refresh=False)
        if epoch >= cfg.min_epochs and epoch - best[1] >= cfg.patience:
            break
    bar.close()

    model.load_state_dict(best[2])
    _fold_target_scale(model, mu, sigma)
    model.eval()
    metrics = {}
    for name in ("val", "test"):
        ends = getattr(split, name)
        if len(ends):
            predicted = _predict(model, torch.from_numpy(windows(prep.embeddings, ends, cfg.seq_len))).numpy()
            metrics[name] = scoring.summary(
                scoring.horizon_metrics(predicted.astype(np.float64), prep.targets[ends], series.raw_close[ends])
            )
    checkpoint = _checkpoint(model, series, cfg, prep, input_size, best, history, metrics)
    return TrainResult(checkpoint, history, best[1])


def prepare(series: Series, cfg: TrainConfig, split: Split | None = None) -> Prepared:
    """Features, the pipeline fitted on the training span, embeddings, targets and the split."""
    n = len(series)
    if series.bars is not None:
        features, _ = technical_features(series.bars)
        first_valid = LOOKBACK
    else:
        features, first_valid = None, 0
    ends = sample_ends(n, first_valid, cfg.seq_len, cfg.prediction_offset, cfg.horizon)
    gap = cfg.prediction_offset + cfg.horizon - 1
    split = split or chronological_split(ends, cfg.val_fraction, cfg.test_fraction, gap)
    pipeline = None
    if features is not None:
        fit_rows = slice(0, int(split.train[-1]) + 1)  # training span only
        pipeline = FeaturePipeline.fit(features[fit_rows], cfg.input_size, series.dates[fit_rows])
        embeddings = pipeline.transform(features)
    else:
        embeddings = series.embeddings
    targets = return_targets(series.prices, cfg.prediction_offset, cfg.horizon)
    return Prepared(embeddings, split, targets, pipeline, first_valid)


def sample_ends(n: int, first_valid: int, seq_len: int, offset: int, horizon: int) -> np.ndarray:
    """Rows t where a window [t - seq_len + 1, t] of complete rows and all K targets exist."""
    last = n - 1 - (offset + horizon - 1)
    return np.arange(first_valid + seq_len - 1, last + 1)


def chronological_split(ends: np.ndarray, val_fraction: float, test_fraction: float, gap: int) -> Split:
    """Train / validation / test by time; ``gap`` samples dropped before each boundary."""
    n = len(ends)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    test = ends[n - n_test :]
    val = ends[n - n_test - n_val : n - n_test - gap] if n_test else ends[n - n_val :]
    train = ends[: n - n_test - n_val - gap]
    if len(train) < 2 or len(val) < 1 or (test_fraction > 0 and len(test) < 1):
        raise ValueError(f"not enough samples for a train/val/test split ({n} windows)")
    return Split(train, val, test)


def split_at(ends: np.ndarray, train_end: int, val_end: int, gap: int) -> Split:
    """The split a checkpoint recorded: train ends at row ``train_end``, validation at ``val_end``."""
    train = ends[ends <= train_end]
    val = ends[(ends > train_end + gap) & (ends <= val_end)]
    test = ends[ends > val_end + gap]
    return Split(train, val, test)


def return_targets(prices: np.ndarray, offset: int, horizon: int) -> np.ndarray:
    """(n, K): price[t + offset + k] / price[t] - 1, NaN where t + offset + k is past the end."""
    n = len(prices)
    out = np.full((n, horizon), np.nan)
    for k in range(horizon):
        ahead = offset + k
        if ahead < n:
            out[: n - ahead, k] = prices[ahead:] / prices[: n - ahead] - 1.0
    return out


def windows(embeddings: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    """(len(ends), seq_len, D) float32 model inputs."""
    index = ends[:, None] + np.arange(-seq_len + 1, 1)[None, :]
    return embeddings[index].astype(np.float32)


def _predict(model: XLSTMForecaster, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])
    model.train(was_training)
    return out


def _fold_target_scale(model: XLSTMForecaster, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Make the head output returns: out = z * sigma + mu, folded into ``output_head.3``."""
    head = model.output_head[3]
    with torch.no_grad():
        s = torch.from_numpy(sigma.astype(np.float32))
        head.weight.mul_(s[:, None])
        head.bias.mul_(s).add_(torch.from_numpy(mu.astype(np.float32)))


def _checkpoint(model, series, cfg, prep, input_size, best, history, metrics) -> dict:  # noqa: ANN001
    config = cfg.model_config(input_size)
    metadata = {
        "seq_len": cfg.seq_len,
        "prediction_offset": cfg.prediction_offset,
        "target": (
            f"simple returns price[t+{cfg.prediction_offset}+k]/price[t]-1 for k=0..{cfg.horizon - 1}, "
            "t = the window's last row; predicted_price[k] = current_price * (1 + output[k])"
        ),
        "block_pattern": config.block_pattern,
        "inputs": "ohlcv" if prep.pipeline is not None else "embeddings",
        "feature_pipeline": None
        if prep.pipeline is None
        else {
            "kind": "ohlcv_technical_v1",
            "features": len(prep.pipeline.feature_names),
            "lookback": prep.pipeline.lookback,
            "rows_needed": prep.pipeline.rows_needed(cfg.seq_len),
            "input_size": prep.pipeline.output_size,
            "explained_variance": round(float(sum(prep.pipeline.explained_variance_ratio)), 4),
            "fit_span": prep.pipeline.fit_span,
        },
        "spans": prep.split.spans(series),
        "split_rows": {"train_end": int(prep.split.train[-1]), "val_end": int(prep.split.val[-1])},
        "data": {"name": series.name, "sha256": series.sha256, **series.info},
        "seed": cfg.seed,
        "train_config": asdict(cfg),
        "best_epoch": best[1],
        "epochs_run": len(history) - 1,
        "history": [{k: v if v is None else round(v, 6) for k, v in h.items()} for h in history],
        "best_val_loss_standardised": round(best[0], 6),
        "untrained_val_loss_standardised": round(history[0]["val_loss"], 6),
        "metrics": metrics,
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "tqdm": tqdm.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "created_by": "scripts/train.py",
    }
    checkpoint = {
        "model_state_dict": {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
        "config": {
            "input_size": config.input_size,
            "hidden_size": config.hidden_size,
            "num_layers": config.num_layers,
            "num_blocks": config.num_blocks,
            "output_size": config.output_size,
            "dropout": config.dropout,
            "prediction_horizon": config.output_size,
        },
        "metadata": metadata,
    }
    if prep.pipeline is not None:
        checkpoint["feature_pipeline"] = prep.pipeline.state()
    return checkpoint
