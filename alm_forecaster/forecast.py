"""The forecast of one request: every series' point forecast and quantiles, in its own units.

What the pipeline produces (`pipeline.Pipeline.forecast`) and what everything downstream reads:
the CSV and KServe encoders (csv_protocol.py, kserve.py), the backtest, the bulk client (which
decodes a served answer back into one). Arrays are indexed (series, step[, level]); a series
that got no forecast has NaN rows and its error in ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alm_forecaster.errors import RequestError
from alm_forecaster.kinds import SeriesKind


@dataclass(frozen=True)
class Forecast:
    """Point forecasts (N, K) and quantiles (N, K, Q) at ``levels``, steps 1..K."""

    names: tuple[str, ...]
    kinds: tuple[SeriesKind, ...]
    anchors: np.ndarray  # (N,) the value each forecast starts from
    point: np.ndarray  # (N, K)
    levels: tuple[float, ...]  # the quantile levels returned (may be none)
    quantiles: np.ndarray  # (N, K, Q)
    errors: tuple[RequestError | None, ...]  # why a series got no forecast (None: it did)
    model: str
    version: str

    def __len__(self) -> int:
        return len(self.names)

    @property
    def steps(self) -> int:
        return int(self.point.shape[1])

    @property
    def ok(self) -> np.ndarray:
        """(N,) bool: the series that were forecast."""
        return np.array([error is None for error in self.errors], dtype=bool)

    def level_key(self, level: float) -> str:
        """How answers name a level: its shortest decimal form (``"0.05"``)."""
        return f"{level:g}"

    def by_level(self, i: int) -> dict[str, list[float]]:
        """Series ``i``'s quantiles as ``{"0.05": [step 1, ...], ...}``."""
        return {self.level_key(lv): self.quantiles[i, :, j].tolist() for j, lv in enumerate(self.levels)}

    def series(self, i: int) -> Forecast:
        """The forecast of series ``i`` alone."""
        return Forecast(
            self.names[i : i + 1],
            self.kinds[i : i + 1],
            self.anchors[i : i + 1],
            self.point[i : i + 1],
            self.levels,
            self.quantiles[i : i + 1],
            self.errors[i : i + 1],
            self.model,
            self.version,
        )
