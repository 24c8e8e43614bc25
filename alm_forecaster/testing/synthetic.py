"""Deterministic inputs: seed-format checkpoints with random weights and embeddings CSVs.

Everything here is a function of its arguments and seed, so tests and benchmarks that build
the same input get the same bytes. The checkpoints are UNTRAINED: their forecasts mean
nothing; they exercise loading, validation and serving at any size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alm_forecaster.config import ModelConfig
from alm_forecaster.model import XLSTMForecaster

#: A model small enough for a test to build, load and serve in milliseconds.
TINY = ModelConfig(input_size=8, hidden_size=16, num_layers=2, num_blocks=3, output_size=5)


def write_checkpoint(path: Path, config: ModelConfig = TINY, seed: int = 0, **kwargs) -> Path:
    """`seed_checkpoint` saved to ``path`` (keyword arguments go to it); returns ``path``."""
    torch.save(seed_checkpoint(config, seed, **kwargs), path)
    return path


def seed_checkpoint(config: ModelConfig, seed: int, declared_output_size: int | None = None) -> dict:
    """A seed-format checkpoint dict: ``model_state_dict`` + ``config`` (plain values only).

    ``declared_output_size`` reproduces the platform's known inconsistency (``output_size: 1``
    with ``prediction_horizon: 5``) when given. The config says ``"untrained": true``.
    """
    torch.manual_seed(seed)
    model = XLSTMForecaster(config)
    return {
        "model_state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "config": {
            "input_size": config.input_size,
            "hidden_size": config.hidden_size,
            "num_layers": config.num_layers,
            "num_blocks": config.num_blocks,
            "output_size": config.output_size if declared_output_size is None else declared_output_size,
            "dropout": config.dropout,
            "prediction_horizon": config.output_size,
            "untrained": True,
        },
    }


def embeddings_csv(
    rows: int = 20, input_size: int = 128, seed: int = 0, extra: dict[str, str] | None = None, newline: str = "\n"
) -> bytes:
    """A valid embeddings CSV: ``emb_0..emb_{n-1}``, ``last_price`` (+ optional constant extra columns)."""
    rng = np.random.default_rng(seed)
    header = [f"emb_{i}" for i in range(input_size)] + ["last_price"] + list(extra or {})
    lines = [",".join(header)]
    price = 100.0
    for _ in range(rows):
        price *= 1.0 + 0.01 * rng.standard_normal()
        cells = [f"{v:.6f}" for v in rng.standard_normal(input_size)] + [f"{price:.4f}"] + list((extra or {}).values())
        lines.append(",".join(cells))
    return (newline.join(lines) + newline).encode()


def price_series(rows: int = 300, seed: int = 0, start: str = "2020-01-01") -> tuple[np.ndarray, np.ndarray]:
    """(business days, closes) of a random walk with volatility clustering (a GARCH(1,1)-like
    variance), positive and deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    variance, returns = 1e-4, np.empty(rows)
    for i in range(rows):
        returns[i] = np.sqrt(variance) * rng.standard_normal()
        variance = 2e-6 + 0.1 * returns[i] ** 2 + 0.88 * variance
    days = np.busday_offset(start, np.arange(rows), roll="forward")
    return days, 100.0 * np.exp(np.cumsum(returns))


def price_csv(rows: int = 300, seed: int = 0, header: str = "Date,Close") -> bytes:
    """`price_series` as a single-price CSV (``header`` names the two columns)."""
    return prices_csv(*price_series(rows, seed), header=header)


def prices_csv(days: np.ndarray, closes: np.ndarray, header: str = "Date,Close") -> bytes:
    """Dates and prices as a single-price CSV, the prices written exactly (repr)."""
    return (header + "\n" + "".join(f"{d},{c!r}\n" for d, c in zip(days, closes.tolist(), strict=True))).encode()
