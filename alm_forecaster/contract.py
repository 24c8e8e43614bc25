"""The seed's data contract: a table -> the validated model window and current price.

Columns ``emb_0`` .. ``emb_{input_size-1}`` and ``last_price``, oldest row first, extra
columns ignored. The last ``seq_len`` rows are the window; every value in it that the model
uses must be a finite number and ``last_price`` must be positive. Errors name the column and
row of the first bad value.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from alm_forecaster.errors import InputError
from alm_forecaster.table import Table

PRICE_COLUMN = "last_price"


@dataclass(frozen=True)
class Window:
    """One request's model input: (seq_len, input_size) float32 and the price it ends at."""

    embeddings: np.ndarray
    current_price: float


def embedding_columns(input_size: int) -> list[str]:
    return list(_embedding_columns(input_size))


@functools.lru_cache(maxsize=16)
def _embedding_columns(input_size: int) -> tuple[str, ...]:
    """The names, built once per input size rather than for every request."""
    return tuple(f"emb_{i}" for i in range(input_size))


def embedding_window(table: Table, input_size: int, seq_len: int) -> Window:
    """Validate an embeddings table and cut its last ``seq_len`` rows as the model window."""
    columns = embedding_columns(input_size) + [PRICE_COLUMN]
    index = table.column_index()
    missing = [name for name in columns if name not in index]
    if missing:
        raise InputError(f"Missing required columns: {_summarise(missing)}.", reason="missing_columns")
    require_rows(table, seq_len)
    start = len(table.rows) - seq_len
    values = numeric_block(table, [index[name] for name in columns], start)
    prices = values[:, -1]
    if (prices <= 0).any():
        row = int(np.argmax(prices <= 0))
        raise InputError(
            f"Row {start + row + 1} (line {table.lines[start + row]}), column '{PRICE_COLUMN}': "
            f"price must be positive, got {prices[row]:g}.",
            reason="non_positive_price",
        )
    with np.errstate(over="ignore"):
        embeddings = values[:, :-1].astype(np.float32)
    if not np.isfinite(embeddings).all():
        row, col = np.argwhere(~np.isfinite(embeddings))[0]
        raise InputError(
            f"Row {start + row + 1} (line {table.lines[start + row]}), column '{columns[col]}': "
            f"{table.rows[start + row][index[columns[col]]].strip()!r} overflows float32.",
            reason="bad_value",
        )
    return Window(embeddings=embeddings, current_price=float(prices[-1]))


def require_rows(table: Table, needed: int, why: str = "") -> None:
    """The seed's message, verbatim: 'Not enough data points. Need at least 20, got 15'."""
    if len(table.rows) < needed:
        raise InputError(
            f"Not enough data points. Need at least {needed}, got {len(table.rows)}{why}", reason="too_few_rows"
        )


def numeric_block(table: Table, columns: list[int], start: int = 0) -> np.ndarray:
    """Rows ``start:`` of the given columns as float64; the first bad cell is named.

    Fast path: one ``float`` per cell over a flat list (numpy's text parsers are no faster
    and read a blank cell as -1). ``float`` is laxer than the contract (it takes '1_000' and
    non-ASCII digits), so the flat text is screened once and the values checked for
    finiteness; any failure falls back to a cell-by-cell scan that names the first bad cell.
    """
    rows = table.rows[start:]
    first = columns[0]
    if columns == list(range(first, first + len(columns))):  # the usual layout: slice, don't pick
        cells = [cell for row in rows for cell in row[first : first + len(columns)]]
    else:
        cells = [row[c] for row in rows for c in columns]
    flat = "".join(cells)
    if flat.isascii() and "_" not in flat:
        try:
            values = np.fromiter(map(float, cells), dtype=np.float64, count=len(cells))
        except ValueError:
            values = None
        if values is not None and np.isfinite(values).all():
            return values.reshape(len(rows), len(columns))
    raise _first_bad_cell(table, columns, start)


def _first_bad_cell(table: Table, columns: list[int], start: int) -> InputError:
    for r in range(start, len(table.rows)):
        for c in columns:
            cell = table.rows[r][c]
            problem = _cell_problem(cell)
            if problem:
                return InputError(
                    f"Row {r + 1} (line {table.lines[r]}), column '{table.header[c]}': {problem}.",
                    reason="bad_value",
                )
    raise AssertionError("numeric_block found a bad cell that the scan did not")  # pragma: no cover


def _cell_problem(cell: str) -> str | None:
    # Judge the raw cell exactly as numeric_block's fast path does: str.strip() also removes a
    # no-break space or '\x1c'..'\x1f' that float() or the ASCII screen refuse (was a 500).
    text = cell.strip()
    shown = cell.strip(" \t")
    if not text:
        return "empty value"
    if not cell.isascii() or "_" in cell:
        return f"{shown!r} is not a number"
    try:
        value = float(cell)
    except ValueError:
        hint = " (a decimal comma or a thousands separator?)" if "," in text else ""
        return f"{shown!r} is not a number{hint}"
    if not math.isfinite(value):
        return f"{text!r} is not a finite number"
    return None


def _summarise(names: list[str], limit: int = 8) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return f"{', '.join(names[:limit])} and {len(names) - limit} more ({len(names)} in all)"
