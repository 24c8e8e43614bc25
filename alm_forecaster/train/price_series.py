"""One price a day, for the quantile models: arch's series or any CSV the server accepts.

* ``sp500``, ``nasdaq``: the Close of arch's daily index files (1999-2018);
* ``wti``: FRED's WTI crude oil spot price (``DCOILWTICO``, 1986-2019) as arch ships it; its
  missing days (holidays, written ``.`` by FRED) are dropped;
* a CSV path: a Date column and one price column (or OHLCV, read through its close), validated
  by the serving code (`alm_forecaster.prices`), all rows.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np

from alm_forecaster import prices
from alm_forecaster.errors import InputError
from alm_forecaster.table import read_table
from alm_forecaster.train.datasets import Series, arch_data_file, frame

#: arch dataset -> its price column
ARCH_PRICES = {"sp500": "Close", "nasdaq": "Close", "wti": "DCOILWTICO"}


def load(spec: str) -> Series:
    """An arch dataset name (``sp500``, ``nasdaq``, ``wti``, optionally ``arch:``-prefixed) or a CSV path."""
    name = spec.removeprefix("arch:")
    if name in ARCH_PRICES and not Path(spec).exists():
        return arch_prices(name)
    return csv_prices(spec)


def arch_prices(name: str) -> Series:
    path = arch_data_file(name)
    data = frame(name)[ARCH_PRICES[name]]
    data = data[data.notna() & (data > 0)]
    info = {
        "source": f"arch {importlib.metadata.version('arch')} arch/data/{name}/{path.name}, column {ARCH_PRICES[name]}",
        "rows": len(data),
        "first_date": str(data.index[0].date()),
        "last_date": str(data.index[-1].date()),
    }
    values = data.to_numpy(dtype=np.float64)
    dates = data.index.to_numpy().astype("datetime64[D]")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return Series(f"arch:{name}", digest, values, values, dates, info=info)


def csv_prices(path: str | Path) -> Series:
    path = Path(path)
    raw = path.read_bytes()
    try:
        table = read_table(raw)
        series = prices.from_table(table, len(table.rows))
    except InputError as exc:
        raise ValueError(f"{path}: {exc.message}") from None
    info = {
        "source": str(path),
        "column": series.column,
        "rows": len(series.prices),
        "first_date": str(series.dates[0]),
        "last_date": str(series.dates[-1]),
    }
    return Series(str(path), hashlib.sha256(raw).hexdigest(), series.prices, series.prices, series.dates, info=info)
