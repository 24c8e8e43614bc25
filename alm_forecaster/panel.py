"""A panel: the daily series of one request, whatever format they came in.

    CSV (one price a day: prices.py)  --\
    KServe JSON (many series: kserve.py) --> Panel --> the model's windows (close_features.py)
    a book (issue 17: aligned series)  --/

A panel holds N series as one (N, T) float64 array, each series right-aligned (its last value
in the last column) with NaN before its first value, so the pipeline reads the last rows of
every series with one slice. Beside the values: each series' name, kind, the value forecasts
are expressed against (its anchor: the last value, or the raw close beside an adjusted series),
the start of the series when known, how error messages name it (``column 'Close'``,
``inputs[2].series``), and per-series refusals: a series with an error is never forecast, its
batch mates are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alm_forecaster.errors import RequestError
from alm_forecaster.kinds import SeriesKind


@dataclass(frozen=True)
class Panel:
    """N daily series, oldest value first, right-aligned in ``values`` (N, T)."""

    names: tuple[str, ...]
    kinds: tuple[SeriesKind, ...]
    values: np.ndarray  # (N, T) float64; NaN before each series' first value and for refused series
    lengths: np.ndarray  # (N,) values per series (0 for a refused one)
    anchors: np.ndarray  # (N,) the value each forecast starts from (NaN for a refused series)
    starts: tuple[np.datetime64 | None, ...]  # each series' first timestamp, when given
    labels: tuple[str, ...]  # how messages name each series
    errors: tuple[RequestError | None, ...]  # why a series is refused (None: usable)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def usable(self) -> np.ndarray:
        """(N,) bool: the series that are not refused."""
        return np.array([error is None for error in self.errors], dtype=bool)

    def last(self, rows: int) -> np.ndarray:
        """(N, rows): the last ``rows`` values of every series (NaN where a series is shorter)."""
        if rows <= self.values.shape[1]:
            return self.values[:, self.values.shape[1] - rows :]
        pad = np.full((len(self), rows - self.values.shape[1]), np.nan)
        return np.concatenate([pad, self.values], axis=1)

    @classmethod
    def of(
        cls,
        names: list[str],
        kinds: list[SeriesKind],
        series: list[np.ndarray | None],
        labels: list[str],
        errors: list[RequestError | None] | None = None,
        anchors: list[float | None] | None = None,
        starts: list[np.datetime64 | None] | None = None,
    ) -> Panel:
        """A panel of validated series (None where a series is refused; ``errors`` says why)."""
        count = len(names)
        errors = list(errors) if errors is not None else [None] * count
        lengths = np.array([0 if s is None else len(s) for s in series], dtype=np.int64)
        values = np.full((count, int(lengths.max(initial=0))), np.nan)
        given = anchors if anchors is not None else [None] * count
        anchor = np.full(count, np.nan)
        for i, s in enumerate(series):
            if s is None or not len(s):
                continue
            values[i, values.shape[1] - len(s) :] = s
            anchor[i] = s[-1] if given[i] is None else given[i]
        return cls(
            tuple(names),
            tuple(kinds),
            values,
            lengths,
            anchor,
            tuple(starts) if starts is not None else (None,) * count,
            tuple(labels),
            tuple(errors),
        )
