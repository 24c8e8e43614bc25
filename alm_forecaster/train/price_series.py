"""One value a day, for the quantile models: arch's series, the Treasury yields, or any CSV.

* ``sp500``, ``nasdaq``: the Close of arch's daily index files (1999-2018);
* ``wti``: FRED's WTI crude oil spot price (``DCOILWTICO``, 1986-2019) as arch ships it; its
  missing days (holidays, written ``.`` by FRED) are dropped;
* ``ust:<tenor>`` (``ust:3M``, ``ust:10Y``, ...): a daily US Treasury par yield in percent,
  1990-2014 (data/us_treasury_par_yields_1990_2014.csv), a ``level`` series (yields reach
  zero); the days the tenor was not published are dropped;
* a CSV path: a Date column and one price column (or OHLCV, read through its close), validated
  by the serving code (`alm_forecaster.prices`), all rows; ``path.csv@level`` reads it as a
  level series.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np

from alm_forecaster import prices
from alm_forecaster.errors import InputError
from alm_forecaster.kinds import DEFAULT as DEFAULT_KIND
from alm_forecaster.kinds import KINDS, LEVEL
from alm_forecaster.table import read_table
from alm_forecaster.train.datasets import Series, arch_data_file, frame

#: arch dataset -> its price column
ARCH_PRICES = {"sp500": "Close", "nasdaq": "Close", "wti": "DCOILWTICO"}
ROOT = Path(__file__).resolve().parents[2]
TREASURY_FILE = ROOT / "data" / "us_treasury_par_yields_1990_2014.csv"
TREASURY_PREFIX = "ust:"


def load(spec: str) -> Series:
    """An arch dataset name (``sp500``, ``nasdaq``, ``wti``, optionally ``arch:``-prefixed), a
    Treasury tenor (``ust:10Y``) or a CSV path (``@level`` at its end: a level series)."""
    name = spec.removeprefix("arch:")
    if name in ARCH_PRICES and not Path(spec).exists():
        return arch_prices(name)
    if spec.startswith(TREASURY_PREFIX):
        return treasury(spec.removeprefix(TREASURY_PREFIX))
    path, _, kind = spec.partition("@")
    return csv_prices(path, kind or DEFAULT_KIND)


def treasury(tenor: str) -> Series:
    """One tenor of the Treasury par yield curve (percent), as a level series."""
    raw = TREASURY_FILE.read_bytes()
    table = read_table(raw)
    if tenor not in table.header[1:]:
        raise ValueError(f"unknown Treasury tenor {tenor!r}; choose one of {', '.join(table.header[1:])}.")
    column = table.header.index(tenor)
    rows = [(row[0], float(row[column])) for row in table.rows if row[column].strip()]
    dates = np.array([d for d, _ in rows], dtype="datetime64[D]")
    values = np.array([v for _, v in rows])
    info = {
        "source": f"{TREASURY_FILE.relative_to(ROOT)}, column {tenor}",
        "rows": len(values),
        "first_date": str(dates[0]),
        "last_date": str(dates[-1]),
    }
    digest = hashlib.sha256(raw).hexdigest()
    return Series(f"{TREASURY_PREFIX}{tenor}", digest, values, values, dates, info=info, kind=LEVEL.name)


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


def csv_prices(path: str | Path, kind: str = DEFAULT_KIND) -> Series:
    path = Path(path)
    raw = path.read_bytes()
    if kind not in KINDS:
        raise ValueError(f"{path}: unknown series kind {kind!r}; choose one of {', '.join(KINDS)}.")
    try:
        table = read_table(raw)
        series = prices.from_table(table, len(table.rows), kind=KINDS[kind])
    except InputError as exc:
        raise ValueError(f"{path}: {exc.message}") from None
    info = {
        "source": str(path),
        "column": series.column,
        "rows": len(series.prices),
        "first_date": str(series.dates[0]),
        "last_date": str(series.dates[-1]),
    }
    digest = hashlib.sha256(raw).hexdigest()
    return Series(str(path), digest, series.prices, series.prices, series.dates, info=info, kind=kind)
