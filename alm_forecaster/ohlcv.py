"""Daily OHLCV prices: a validated set of numpy arrays, from a request table or a DataFrame.

Columns ``Date, Open, High, Low, Close, Volume`` (any case; ``Adj Close`` optional, also spelt
``adj_close`` / ``AdjClose``), oldest row first, dates ISO ``YYYY-MM-DD`` (a time part is
ignored) and strictly increasing. Prices must be finite and positive, ``High >= Low``, volume
finite and >= 0. Every error names the row, the file line and the column.

When ``Adj Close`` is present, Open/High/Low/Close are scaled by ``Adj Close / Close`` row by
row (the usual split/dividend adjustment) for everything computed from prices: features and
training targets. ``close`` keeps the raw last close, which is the forecast's current price.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alm_forecaster.contract import _summarise, numeric_block
from alm_forecaster.errors import InputError
from alm_forecaster.kinds import PRICE
from alm_forecaster.table import Table

REQUIRED = ("date", "open", "high", "low", "close", "volume")
ADJ_CLOSE = "adjclose"
DISPLAY = {"date": "Date", "open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}


def normalise_name(name: str) -> str:
    """'Adj Close', 'adj_close', ' ADJCLOSE ' -> 'adjclose'; 'Close' -> 'close'."""
    return name.strip().lower().replace(" ", "").replace("_", "")


@dataclass(frozen=True)
class OHLCV:
    """Validated daily bars, oldest first. Prices here are adjusted when Adj Close was given."""

    dates: np.ndarray  # datetime64[D]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray  # adjusted close (= raw close without Adj Close)
    volume: np.ndarray
    raw_close: np.ndarray
    adjusted: bool = False

    def __len__(self) -> int:
        return len(self.close)

    def tail(self, rows: int) -> OHLCV:
        return self.rows(max(len(self) - rows, 0), None)

    def rows(self, start: int, stop: int | None) -> OHLCV:
        s = slice(start, stop)
        return OHLCV(
            self.dates[s],
            self.open[s],
            self.high[s],
            self.low[s],
            self.close[s],
            self.volume[s],
            self.raw_close[s],
            self.adjusted,
        )


def column_map(header: list[str]) -> dict[str, int]:
    """Normalised OHLCV name -> column index; two columns that mean the same are an error."""
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        key = normalise_name(name)
        if key in REQUIRED or key == ADJ_CLOSE:
            if key in found:
                raise InputError(
                    f"Columns '{header[found[key]]}' and '{name}' both name {DISPLAY.get(key, 'Adj Close')}; keep one.",
                    reason="duplicate_columns",
                )
            found[key] = i
    return found


def require_columns(header: list[str]) -> dict[str, int]:
    """`column_map`, raising `InputError` naming every missing OHLCV column."""
    columns = column_map(header)
    missing = [DISPLAY[key] for key in REQUIRED if key not in columns]
    if missing:
        raise InputError(
            f"Missing required OHLCV columns: {_summarise(missing)} (expected Date, Open, High, Low, Close, "
            "Volume; Adj Close optional; any case).",
            reason="missing_columns",
        )
    return columns


def from_table(table: Table, start: int = 0) -> OHLCV:
    """Rows ``start:`` of an OHLCV table, validated; raises `InputError` naming the first fault."""
    columns = require_columns(table.header)
    keys = ["open", "high", "low", "close", "volume"] + ([ADJ_CLOSE] if ADJ_CLOSE in columns else [])
    values = numeric_block(table, [columns[k] for k in keys], start)
    dates = parse_dates(
        [row[columns["date"]] for row in table.rows[start:]], table, start, table.header[columns["date"]]
    )
    where = _Where(table, start, {k: table.header[columns[k]] for k in columns})
    adj = values[:, 5] if len(keys) == 6 else None
    return _validated(dates, values[:, 0], values[:, 1], values[:, 2], values[:, 3], values[:, 4], adj, where)


def from_arrays(
    dates: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    adj_close: np.ndarray | None = None,
) -> OHLCV:
    """Validate arrays (e.g. from a DataFrame); errors name the row (1 = oldest)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in (open_, high, low, close, volume)]
    adj = None if adj_close is None else np.asarray(adj_close, dtype=np.float64)
    for name, array in zip(("open", "high", "low", "close", "volume"), arrays, strict=True):
        _check_finite(array, name, _Where(None, 0, {}))
    if adj is not None:
        _check_finite(adj, ADJ_CLOSE, _Where(None, 0, {}))
    days = np.asarray(dates).astype("datetime64[D]")
    return _validated(days, *arrays, adj, _Where(None, 0, {}))


def from_frame(frame) -> OHLCV:  # noqa: ANN001 - pandas.DataFrame; pandas stays optional here
    """A pandas DataFrame with a DatetimeIndex (or a Date column) and OHLCV columns."""
    by_name = {normalise_name(str(c)): c for c in frame.columns}
    dates = frame[by_name["date"]].to_numpy() if "date" in by_name else frame.index.to_numpy()
    missing = [DISPLAY[k] for k in REQUIRED[1:] if k not in by_name]
    if missing:
        raise InputError(f"Missing required OHLCV columns: {', '.join(missing)}.", reason="missing_columns")
    cols = [frame[by_name[k]].to_numpy() for k in REQUIRED[1:]]
    adj = frame[by_name[ADJ_CLOSE]].to_numpy() if ADJ_CLOSE in by_name else None
    return from_arrays(np.asarray(dates, dtype="datetime64[D]"), *cols, adj)


class _Where:
    """Names a row (and file line, for tables) and a column in error messages."""

    def __init__(self, table: Table | None, start: int, names: dict[str, str]) -> None:
        self.table, self.start, self.names = table, start, names

    def __call__(self, row: int, key: str) -> str:
        column = self.names.get(key, DISPLAY.get(key, "Adj Close"))
        if self.table is None:
            return f"Row {row + 1}, column '{column}'"
        r = self.start + row
        return f"Row {r + 1} (line {self.table.lines[r]}), column '{column}'"


def _check_finite(array: np.ndarray, key: str, where: _Where) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(f"{where(row, key)}: {array[row]!r} is not a finite number.", reason="bad_value")


def _validated(dates, open_, high, low, close, volume, adj, where: _Where) -> OHLCV:  # noqa: ANN001
    for key, array in (("open", open_), ("high", high), ("low", low), ("close", close), (ADJ_CLOSE, adj)):
        if array is not None:
            PRICE.check(array, lambda row, k=key: where(row, k))
    if (volume < 0).any():
        row = int(np.argmax(volume < 0))
        raise InputError(f"{where(row, 'volume')}: volume must be >= 0, got {volume[row]:g}.", reason="bad_value")
    if (high < low).any():
        row = int(np.argmax(high < low))
        raise InputError(f"{where(row, 'high')}: High {high[row]:g} is below Low {low[row]:g}.", reason="bad_value")
    require_increasing(dates, lambda row: where(row, "date"))
    raw_close = close
    if adj is not None:
        factor = adj / close
        open_, high, low, close = open_ * factor, high * factor, low * factor, adj
    return OHLCV(dates, open_, high, low, close, volume, raw_close, adj is not None)


def require_increasing(dates: np.ndarray, where) -> None:  # noqa: ANN001 - where(row) names a row's date cell
    """Dates strictly increasing, oldest first; else `InputError` naming the first offending row."""
    steps = np.diff(dates.astype(np.int64))
    if (steps <= 0).any():
        row = int(np.argmax(steps <= 0)) + 1
        order = " (the file looks newest-first; sort it oldest first)" if (steps < 0).all() else ""
        raise InputError(
            f"{where(row)}: {dates[row]} is not after the previous row's {dates[row - 1]}; dates must be "
            f"strictly increasing, oldest first{order}.",
            reason="bad_dates",
        )


def parse_dates(cells: list[str], table: Table, start: int, column: str) -> np.ndarray:
    """ISO dates (``YYYY-MM-DD``, optionally followed by a time) -> datetime64[D]."""
    texts = [cell.strip() for cell in cells]
    heads = [text[:10] for text in texts]
    try:
        if all(_iso_shape(t) for t in texts):
            return np.array(heads, dtype="datetime64[D]")
    except ValueError:
        pass
    for i, (cell, head) in enumerate(zip(cells, heads, strict=True)):
        try:
            if not _iso_shape(cell.strip()):
                raise ValueError
            np.datetime64(head, "D")
        except ValueError:
            r = start + i
            raise InputError(
                f"Row {r + 1} (line {table.lines[r]}), column '{column}': {cell.strip()!r} is not an ISO date "
                "(YYYY-MM-DD).",
                reason="bad_dates",
            ) from None
    raise AssertionError("date parse failed without a bad cell")  # pragma: no cover


def _iso_shape(text: str) -> bool:
    return len(text) >= 10 and text[4] == "-" and text[7] == "-" and (len(text) == 10 or text[10] in " T")
