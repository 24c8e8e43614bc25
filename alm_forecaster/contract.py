"""The platform's data contract: a table -> the validated model window and current price.

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

from alm_forecaster.errors import InputError, RequestError
from alm_forecaster.kinds import PRICE
from alm_forecaster.table import Table

PRICE_COLUMN = "last_price"


@dataclass(frozen=True)
class Window:
    """One request's model input: (seq_len, input_size) float32, the price it ends at, and for
    models that forecast quantiles the window's volatility (``close_features``) they scale by."""

    embeddings: np.ndarray
    current_price: float
    scale: float | None = None


#: The windows of a request's series and, where a series has none, the error that refuses it:
#: exactly one of ``windows[i]`` and ``errors[i]`` is None.
Windows = tuple[list[Window | None], list[RequestError | None]]


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
    PRICE.check(
        values[:, -1], lambda row: f"Row {start + row + 1} (line {table.lines[start + row]}), column '{PRICE_COLUMN}'"
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
    return Window(embeddings=embeddings, current_price=float(values[-1, -1]))


def canonical_header(input_size: int) -> str:
    """The header line the platform sends: ``emb_0,...,emb_{input_size-1},last_price``."""
    return ",".join([*_embedding_columns(input_size), PRICE_COLUMN])


def fast_embedding_window(text: str, header: str, seq_len: int) -> Window | None:
    """The usual request, read by numpy's C parser: None whenever anything is unusual.

    Taken only when there is no quote, the first line is exactly ``header``
    (`canonical_header`), no line is blank, every line has the header's number of fields, the
    window is printable ASCII without underscores, and each of its values is a finite number
    (prices positive, embeddings within float32). Anything else returns None and the caller
    parses the request the checked way (`read_table`, `embedding_window`), which names the
    problem. Lines are split exactly as `read_table` splits them and numpy reads a number as
    ``float`` does, so whatever this accepts the checked path accepts with the same values
    (tests/test_fuzz_parser.py).
    """
    if '"' in text:  # the checked path reads quoted files with the csv module
        return None
    lines = text.splitlines()
    if len(lines) <= seq_len or lines[0] != header:
        return None
    data = lines[1:]
    fields = header.count(",")
    if not all(line and line.count(",") == fields for line in data):
        return None
    window = data[-seq_len:]
    flat = "".join(window)
    # numpy strips the separators '\x1c'..'\x1f' around a number like spaces; float() does not.
    if not flat.isascii() or "_" in flat or not flat.replace("\t", " ").isprintable():
        return None
    try:
        values = np.loadtxt(window, delimiter=",", comments=None, dtype=np.float64, ndmin=2)
    except ValueError:
        return None
    if values.shape != (seq_len, fields + 1) or not np.isfinite(values).all() or PRICE.invalid(values[:, -1]).any():
        return None
    with np.errstate(over="ignore"):
        embeddings = values[:, :-1].astype(np.float32)
    if not np.isfinite(embeddings).all():
        return None
    return Window(embeddings=embeddings, current_price=float(values[-1, -1]))


def require_rows(table: Table, needed: int, why: str = "") -> None:
    """The original service's message, verbatim (clients match on it): 'Not enough data points.
    Need at least 20, got 15'."""
    if len(table.rows) < needed:
        raise InputError(
            f"Not enough data points. Need at least {needed}, got {len(table.rows)}{why}", reason="too_few_rows"
        )


def numeric_block(table: Table, columns: list[int], start: int = 0) -> np.ndarray:
    """Rows ``start:`` of the given columns as float64; the first bad cell is named.

    One ``float`` per cell over a flat list (the usual file never gets here: numpy's reader
    takes it, `fast_embedding_window`). ``float`` is laxer than the contract (it takes '1_000' and
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
    # no-break space or '\x1c'..'\x1f' that float() or the ASCII screen refuse, so a cell that
    # only looks empty after strip() must still be reported, or the scan would find nothing.
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
