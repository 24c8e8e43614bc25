"""A single daily price series from a request table: a date column and one price column.

The layout an ALM book mostly has (rates, FX, commodities, funds): one price a day, oldest
first. Column names are matched in any case, spaces and underscores ignored:

* the date: ``Date`` (also ``observation_date``, ``Day``, ``Time``, ``Timestamp``), ISO
  ``YYYY-MM-DD`` (a time part is ignored), strictly increasing;
* the price, first found: ``Adj Close``, ``Close``, ``Price``, ``Value``, else the only other
  column (e.g. FRED's ``DCOILWTICO``). A full OHLCV file is read through its close. With both
  ``Adj Close`` and ``Close``, the adjusted series feeds the features and the raw ``Close`` is
  the current price the forecast is made from.

Prices must be finite and positive. Every error names the row, the file line and the column.
Only the rows a model reads are validated (the last ``rows`` of the table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alm_forecaster.contract import _summarise, numeric_block, require_rows
from alm_forecaster.errors import InputError
from alm_forecaster.kinds import PRICE, SeriesKind
from alm_forecaster.ohlcv import normalise_name, parse_dates, require_increasing
from alm_forecaster.panel import Panel
from alm_forecaster.table import Table

DATE_NAMES = ("date", "observationdate", "day", "time", "timestamp")
PRICE_NAMES = ("adjclose", "close", "price", "value")


@dataclass(frozen=True)
class PriceSeries:
    """Validated daily prices, oldest first: ``prices`` feed the features, ``current_price``
    (the last raw price) is what forecasts are expressed against."""

    dates: np.ndarray  # datetime64[D]
    prices: np.ndarray
    current_price: float
    column: str


def has_date_column(header: list[str]) -> bool:
    return any(normalise_name(name) in DATE_NAMES for name in header)


def columns(header: list[str]) -> tuple[int, int, int | None]:
    """(date column, price column, raw close column or None) of a single-price table."""
    names = [normalise_name(name) for name in header]
    dates = [i for i, name in enumerate(names) if name in DATE_NAMES]
    if not dates:
        raise InputError(
            f"No date column: expected one named Date (or observation_date, Day, Time, Timestamp; any case) "
            f"among {_summarise([repr(h) for h in header])}.",
            reason="missing_columns",
        )
    date = dates[0]
    for wanted in PRICE_NAMES:
        if wanted in names:
            price = names.index(wanted)
            raw = names.index("close") if wanted == "adjclose" and "close" in names else None
            return date, price, raw
    others = [i for i in range(len(header)) if i != date]
    if len(others) == 1:
        return date, others[0], None
    raise InputError(
        "No price column: expected one named Close, Adj Close, Price or Value (any case), or exactly one column "
        f"besides the date; got {_summarise([repr(header[i]) for i in others]) or 'none'}.",
        reason="missing_columns",
    )


def from_table(table: Table, rows: int, why: str = "", kind: SeriesKind = PRICE, hint: str = "") -> PriceSeries:
    """The last ``rows`` rows of a single-price (or OHLCV) table, validated as a series of ``kind``
    (``hint``: how a refused value names the kind that would take it)."""
    date, price, raw = columns(table.header)
    require_rows(table, rows, why)
    start = len(table.rows) - rows
    picked = [price] if raw is None else [price, raw]
    values = numeric_block(table, picked, start)
    for k, column in enumerate(picked):
        kind.check(
            values[:, k],
            lambda i, c=column: f"Row {start + i + 1} (line {table.lines[start + i]}), column '{table.header[c]}'",
            hint,
        )
    days = parse_dates([row[date] for row in table.rows[start:]], table, start, table.header[date])
    column = table.header[date]
    require_increasing(days, lambda i: f"Row {start + i + 1} (line {table.lines[start + i]}), column '{column}'")
    current = values[-1, -1]
    return PriceSeries(days, values[:, 0], float(current), table.header[price])


def fast_panel(text: str, rows: int, kind: SeriesKind = PRICE) -> Panel | None:
    """The usual request, ``Date,<value>`` and nothing unusual, read at array speed: None
    whenever anything is unusual, and the caller reads the file the checked way (`panel`), which
    names the problem.

    Taken only when there is no quote, the header is two names, a date column first and one
    value column, every one of the last ``rows`` lines is two plain ASCII fields without
    underscores, each date is YYYY-MM-DD, strictly increasing, and each value a finite number
    the kind allows: then `panel` would accept the same rows with the same numbers (``float``
    and numpy read a plain decimal alike), and this returns what it would.
    """
    if '"' in text:
        return None
    lines = text.splitlines()
    if len(lines) <= rows or lines[0].count(",") != 1:
        return None
    date, value = (name.strip() for name in lines[0].split(","))
    if normalise_name(date) not in DATE_NAMES or not value or normalise_name(value) in DATE_NAMES:
        return None
    tail = lines[-rows:]
    flat = "".join(tail)
    if not flat.isascii() or "_" in flat or not flat.replace("\t", " ").isprintable():
        return None
    try:
        days, cells = zip(*(line.split(",") for line in tail), strict=True)
    except ValueError:  # a line with another number of fields
        return None
    if not all(len(d) == 10 and d[4] == "-" == d[7] for d in days):
        return None
    try:
        values = np.array(cells, dtype=np.float64)
        dates = np.array(days, dtype="datetime64[D]")
    except ValueError:
        return None
    if not np.isfinite(values).all() or kind.invalid(values).any() or (np.diff(dates.astype(np.int64)) <= 0).any():
        return None
    return Panel.of([value], [kind], [values], [f"column '{value}'"], anchors=[float(values[-1])])


def panel(table: Table, rows: int, why: str = "", kind: SeriesKind = PRICE, hint: str = "") -> Panel:
    """A single-price table as a panel of one series (its last ``rows`` values)."""
    series = from_table(table, rows, why, kind, hint)
    return Panel.of(
        [series.column], [kind], [series.prices], [f"column '{series.column}'"], anchors=[series.current_price]
    )


def wide_panel(table: Table, kinds: dict[str, SeriesKind], hint: str = "") -> Panel:
    """A wide table (a date column, then one column per series, one row per common day) as a
    panel: every row and column validated (a book is read whole), each column as its kind
    (``kinds`` by column name; price by default)."""
    names = [normalise_name(name) for name in table.header]
    dates = [i for i, name in enumerate(names) if name in DATE_NAMES]
    if not dates:
        raise InputError(
            "No date column: a book's CSV is Date,<name1>,<name2>,...; got "
            f"{_summarise([repr(h) for h in table.header])}.",
            reason="missing_columns",
        )
    date = dates[0]
    picked = [i for i in range(len(table.header)) if i != date]
    if not picked:
        raise InputError("No series column: a book's CSV is Date,<name1>,<name2>,...", reason="missing_columns")
    headers = [table.header[i].strip() for i in picked]
    unknown = sorted(set(kinds) - set(headers))
    if unknown:
        raise InputError(
            f"Option 'kinds' names {', '.join(map(repr, unknown))}, not a column of the file "
            f"({_summarise([repr(h) for h in headers])}).",
            reason="bad_option",
            param="kinds",
        )
    require_rows(table, 1)
    values = numeric_block(table, picked, 0)
    series_kinds = [kinds.get(name, PRICE) for name in headers]
    for k, (column, kind) in enumerate(zip(picked, series_kinds, strict=True)):
        kind.check(
            values[:, k], lambda i, c=column: f"Row {i + 1} (line {table.lines[i]}), column '{table.header[c]}'", hint
        )
    days = parse_dates([row[date] for row in table.rows], table, 0, table.header[date])
    column = table.header[date]
    require_increasing(days, lambda i: f"Row {i + 1} (line {table.lines[i]}), column '{column}'")
    return Panel.of(
        headers,
        series_kinds,
        list(values.T),
        [f"column '{name}'" for name in headers],
        starts=[days[0].astype("datetime64[s]")] * len(headers),
    )
