"""Test inputs: deterministic embeddings CSVs and small seed-format checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from alm_forecaster.config import ModelConfig
from scripts.make_seed_checkpoint import seed_checkpoint

TINY = ModelConfig(input_size=8, hidden_size=16, num_layers=2, num_blocks=3, output_size=5)


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


def write_checkpoint(path: Path, config: ModelConfig = TINY, seed: int = 0, **kwargs) -> Path:
    torch.save(seed_checkpoint(config, seed, **kwargs), path)
    return path


class CreatesFileWhenUnpickled:
    """A pickled payload whose unpickling calls ``open(marker, "w")``: the marker existing
    proves that it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))
