"""The books of the book report, and a user's own book: aligned daily series with exposures.

* ``us_equity``: a long-only book of the 20 US stocks of skfolio's ``sp500_dataset.csv.gz``
  (adjusted closes 1990-2022), $1m in each; the file is read without importing skfolio (it is
  installed without its dependencies: requirements-dev-nodeps.txt), held out from 2015;
* ``equity_commodity``: long S&P 500, short NASDAQ, long WTI crude (the closes shipped with
  `arch`, 1999-2018), held out from 2015;
* ``ust_steepener``: the 2-year and 10-year Treasury par yields (data/, level series,
  1990-2014), P&L = $1m x (change of the 10Y yield - change of the 2Y yield) in percentage
  points: a DV01-neutral steepener, $10,000 per basis point on each leg (long 2Y bonds, short
  10Y bonds), held out from 2011 (the checkpoint's ``spans.level_holdout_start``);
* a wide CSV ``Date,<name1>,<name2>,...`` (one row per common day) with exposures and kinds by
  name: read as the served CSV book is (``prices.wide_panel``: every cell validated).

Every book's series are aligned on their common dates. An exposure is the book's P&L per unit
of change (book.py): a price's is the value held (P&L = exposure x simple return), a level's the
P&L per unit of the series.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from alm_forecaster import prices
from alm_forecaster.errors import InputError
from alm_forecaster.kinds import KINDS, PRICE
from alm_forecaster.ohlcv import normalise_name
from alm_forecaster.table import read_table
from alm_forecaster.train import price_series

SKFOLIO_VERSION = "1.12.2"
SKFOLIO_FILE = "skfolio/datasets/data/sp500_dataset.csv.gz"


@dataclass(frozen=True)
class Book:
    """N aligned daily series (T, N), their kinds and the book's exposures."""

    name: str
    names: tuple[str, ...]
    kinds: tuple[str, ...]  # kinds.py names: "price" or "level"
    dates: np.ndarray  # (T,) datetime64[D]
    values: np.ndarray  # (T, N) float64
    exposures: np.ndarray  # (N,) P&L per unit of change
    holdout_start: str  # the first origin's date
    description: str = ""
    sources: list[dict] = field(default_factory=list)

    @property
    def prices(self) -> np.ndarray:
        """(N,) bool: the series that are prices (P&L on simple returns)."""
        return np.array([kind == PRICE.name for kind in self.kinds])

    def coordinates(self) -> np.ndarray:
        """(T, N) additive coordinates y (log prices, levels as they are)."""
        return np.stack([KINDS[k].coordinates(self.values[:, i]) for i, k in enumerate(self.kinds)], axis=1)


def aligned(columns: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """{name: (dates, values)} -> (common dates, (T, N) values), on the days every series has."""
    common = None
    for dates, _ in columns.values():
        common = dates if common is None else np.intersect1d(common, dates)
    values = np.stack([v[np.searchsorted(d, common)] for d, v in columns.values()], axis=1)
    return common, values


def skfolio_file() -> Path:
    """skfolio's S&P 500 stocks file, located through the installed distribution's metadata."""
    try:
        dist = importlib.metadata.distribution("skfolio")
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(
            f"the us_equity book reads skfolio's {SKFOLIO_FILE}: pip install --no-deps skfolio=={SKFOLIO_VERSION} "
            "(requirements-dev-nodeps.txt; scripts/setup_env.sh --dev installs it)"
        ) from None
    return Path(dist.locate_file(SKFOLIO_FILE))


def us_equity(holdout_start: str = "2015-01-01") -> Book:
    path = skfolio_file()
    frame = pd.read_csv(path, parse_dates=["Date"]).set_index("Date").dropna()
    names = tuple(str(c) for c in frame.columns)
    source = {
        "source": f"skfolio {importlib.metadata.version('skfolio')} {SKFOLIO_FILE}",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "first_date": str(frame.index[0].date()),
        "last_date": str(frame.index[-1].date()),
        "rows": len(frame),
    }
    return Book(
        "us_equity",
        names,
        (PRICE.name,) * len(names),
        frame.index.to_numpy().astype("datetime64[D]"),
        frame.to_numpy(dtype=np.float64),
        np.full(len(names), 1e6),
        holdout_start,
        f"long-only: $1m in each of {len(names)} US stocks ({', '.join(names)})",
        [source],
    )


def from_series(
    name: str, specs: dict[str, str], exposures: dict[str, float], holdout_start: str, description: str
) -> Book:
    """A book of ``price_series.load`` specs {column name: spec}, aligned on common dates."""
    loaded = {column: price_series.load(spec) for column, spec in specs.items()}
    dates, values = aligned({c: (s.dates, s.prices) for c, s in loaded.items()})
    return Book(
        name,
        tuple(loaded),
        tuple(s.kind for s in loaded.values()),
        dates,
        values,
        np.array([exposures[c] for c in loaded]),
        holdout_start,
        description,
        [{"series": c, **s.info, "sha256": s.sha256} for c, s in loaded.items()],
    )


def equity_commodity(holdout_start: str = "2015-01-01") -> Book:
    return from_series(
        "equity_commodity",
        {"sp500": "sp500", "nasdaq": "nasdaq", "wti": "wti"},
        {"sp500": 1e7, "nasdaq": -6e6, "wti": 2e6},
        holdout_start,
        "long-short: long $10m S&P 500, short $6m NASDAQ, long $2m WTI crude",
    )


def ust_steepener(holdout_start: str = "2011-01-01") -> Book:
    return from_series(
        "ust_steepener",
        {"ust2y": "ust:2Y", "ust10y": "ust:10Y"},
        {"ust2y": -1e6, "ust10y": 1e6},
        holdout_start,
        "rates: a DV01-neutral 2s10s steepener, P&L = $1m x (change of the 10Y yield - change of the 2Y "
        "yield) in percentage points ($10,000 per bp a leg: long 2Y bonds, short 10Y bonds)",
    )


#: The report's books: name -> builder(holdout_start).
BOOKS = {"us_equity": us_equity, "equity_commodity": equity_commodity, "ust_steepener": ust_steepener}


def wide_csv(path: str | Path, exposures: dict[str, float], kinds: dict[str, str], holdout_start: str) -> Book:
    """A user's book: ``Date,<name1>,...`` read as the served CSV book is; ``exposures`` and
    ``kinds`` by column name (a column without an exposure is left out of the book)."""
    path = Path(path)
    raw = path.read_bytes()
    unknown = sorted(k for k in kinds.values() if k not in KINDS)
    if unknown:
        raise ValueError(f"unknown series kind {unknown[0]!r}; choose one of {', '.join(KINDS)}")
    try:
        table = read_table(raw)
        panel = prices.wide_panel(table, {n: KINDS[k] for n, k in kinds.items()})
    except InputError as exc:
        raise ValueError(f"{path}: {exc.message}") from None
    missing = sorted(set(exposures) - set(panel.names))
    if missing:
        raise ValueError(f"{path}: exposures name {', '.join(missing)}, not a column ({', '.join(panel.names)})")
    keep = [i for i, n in enumerate(panel.names) if n in exposures]
    if not keep:
        raise ValueError(f"{path}: no exposure names a column ({', '.join(panel.names)})")
    date = next(i for i, h in enumerate(table.header) if normalise_name(h) in prices.DATE_NAMES)
    dates = pd.to_datetime([row[date] for row in table.rows]).to_numpy().astype("datetime64[D]")
    names = tuple(panel.names[i] for i in keep)
    return Book(
        path.stem,
        names,
        tuple(panel.kinds[i].name for i in keep),
        dates,
        panel.values[keep].T.copy(),
        np.array([exposures[n] for n in names]),
        holdout_start,
        ", ".join(f"{n} {exposures[n]:+,.0f} ({panel.kinds[i].name})" for n, i in zip(names, keep, strict=True)),
        [{"source": str(path), "sha256": hashlib.sha256(raw).hexdigest(), "rows": len(dates)}],
    )
