"""Training and evaluation data: the `arch` package's daily series (offline) or a CSV file.

A data source becomes a `Series`: dates, the price the targets are computed from, the raw
close (the forecast's current price) and either OHLCV bars (for the feature pipeline) or
ready-made embeddings (an ``emb_0..``, ``last_price`` CSV in the serving contract).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from alm_forecaster import ohlcv
from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.contract import PRICE_COLUMN, embedding_columns, numeric_block
from alm_forecaster.errors import InputError
from alm_forecaster.ohlcv import OHLCV
from alm_forecaster.ohlcv_features import FeaturePipeline, looks_like_ohlcv
from alm_forecaster.table import read_table

#: Daily OHLCV series shipped inside the `arch` package (1999-01-04 .. 2018-12-31).
ARCH_OHLCV = {"sp500": "arch.data.sp500", "nasdaq": "arch.data.nasdaq"}
#: Also in `arch`, but close prices only: the feature pipeline needs OHLCV bars.
ARCH_CLOSE_ONLY = {"wti": "arch.data.wti"}


@dataclass
class Series:
    """A daily series ready for training or evaluation, oldest first."""

    name: str
    sha256: str
    prices: np.ndarray  # what returns are computed on (adjusted close when Adj Close was given)
    raw_close: np.ndarray  # the price a forecast starts from (last_price / Close)
    dates: np.ndarray | None = None  # datetime64[D]; None for an embeddings CSV without dates
    bars: OHLCV | None = None
    embeddings: np.ndarray | None = None  # (n, D) float64 for an embeddings CSV
    info: dict = field(default_factory=dict)
    kind: str = "price"  # the series kind (alm_forecaster.kinds) of ``prices``

    def __len__(self) -> int:
        return len(self.prices)

    def date(self, row: int) -> str:
        return str(self.dates[row]) if self.dates is not None else f"row {row + 1}"


def load(data: str) -> Series:
    """``arch:sp500`` / ``sp500`` (an arch dataset name) or a CSV path."""
    name = data.removeprefix("arch:")
    if name in ARCH_OHLCV or name in ARCH_CLOSE_ONLY:
        if not Path(data).exists():
            return load_arch(name)
    return load_csv(data)


def load_arch(name: str) -> Series:
    """``sp500`` / ``nasdaq`` from the installed `arch` package's data files; no network access."""
    path = arch_file(name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    bars = ohlcv.from_frame(frame(name))
    info = {"source": f"arch {importlib.metadata.version('arch')} arch/data/{name}/{path.name}"}
    return _from_bars(f"arch:{name}", digest, bars, info)


def arch_file(name: str) -> Path:
    """The data file of an arch OHLCV dataset (the feature pipeline needs daily bars)."""
    if name in ARCH_CLOSE_ONLY:
        raise ValueError(f"arch's {name!r} series has close prices only; the feature pipeline needs daily OHLCV bars.")
    if name not in ARCH_OHLCV:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(ARCH_OHLCV))}.")
    return arch_data_file(name)


def arch_data_file(name: str) -> Path:
    """The data file of any arch dataset, found without importing arch: only the file is needed,
    and importing arch loads its whole statistics stack."""
    if name not in ARCH_OHLCV and name not in ARCH_CLOSE_ONLY:
        known = sorted({*ARCH_OHLCV, *ARCH_CLOSE_ONLY})
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(known)}.")
    spec = importlib.util.find_spec("arch")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the 'arch' package is not installed (pip install arch): it ships the datasets.")
    return Path(spec.submodule_search_locations[0]) / "data" / name / f"{name}.csv.gz"


def frame(name: str) -> pd.DataFrame:
    """The arch DataFrame, read as ``arch.data.<name>.load()`` reads it (Date index; the file's
    columns as numbers, missing values as NaN)."""
    data = pd.read_csv(arch_data_file(name))
    data["Date"] = pd.to_datetime(data["Date"], format="%m/%d/%Y")
    data = data.set_index("Date")
    for column in data:
        data[column] = pd.to_numeric(data[column], errors="coerce")
    return data


def _from_bars(name: str, digest: str, bars: OHLCV, info: dict) -> Series:
    info = {
        **info,
        "kind": "ohlcv",
        "adjusted": bars.adjusted,
        "rows": len(bars),
        "first_date": str(bars.dates[0]),
        "last_date": str(bars.dates[-1]),
    }
    return Series(name, digest, bars.close, bars.raw_close, bars.dates, bars=bars, info=info)


def load_csv(path: str | Path) -> Series:
    """An OHLCV CSV (Date, Open, High, Low, Close, Volume[, Adj Close]) or an embeddings CSV
    (emb_0.., last_price[, date]); validated by the same code as a serving request."""
    path = Path(path)
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    try:
        table = read_table(raw)
        if looks_like_ohlcv(table.header):
            return _from_bars(str(path), digest, ohlcv.from_table(table), {"source": str(path)})
        return _from_embeddings(str(path), digest, table)
    except InputError as exc:
        raise ValueError(f"{path}: {exc.message}") from None


def _from_embeddings(name: str, digest: str, table) -> Series:  # noqa: ANN001 - Table
    index = table.column_index()
    count = 0
    while f"emb_{count}" in index:
        count += 1
    if count == 0 or PRICE_COLUMN not in index:
        raise InputError(
            "expected an OHLCV file (Date, Open, High, Low, Close, Volume) or embeddings "
            f"(emb_0.., {PRICE_COLUMN}); header has {', '.join(table.header[:8])}...",
            reason="missing_columns",
        )
    values = numeric_block(table, [index[f"emb_{i}"] for i in range(count)] + [index[PRICE_COLUMN]])
    prices = values[:, -1]
    if (prices <= 0).any():
        raise InputError(f"row {int(np.argmax(prices <= 0)) + 1}: last_price must be positive.", reason="bad_value")
    dates = None
    date_column = next((i for i, h in enumerate(table.header) if h.strip().lower() == "date"), None)
    if date_column is not None:
        dates = np.array([row[date_column].strip()[:10] for row in table.rows], dtype="datetime64[D]")
    info = {"kind": "embeddings", "rows": len(prices), "input_size": count}
    return Series(name, digest, prices, prices, dates, embeddings=values[:, :-1], info=info)


def slice_rows(series: Series, start: int, stop: int | None) -> Series:
    """Rows ``start:stop`` of a series (a small slice for tests, or a shorter history)."""
    s = slice(start, stop)
    bars = series.bars.rows(start, stop) if series.bars is not None else None
    info = {**series.info, "rows_used": [start, stop if stop is not None else len(series)]}
    if bars is not None:
        info.update(rows=len(bars), first_date=str(bars.dates[0]), last_date=str(bars.dates[-1]))
    return Series(
        series.name,
        series.sha256,
        series.prices[s],
        series.raw_close[s],
        None if series.dates is None else series.dates[s],
        bars,
        None if series.embeddings is None else series.embeddings[s],
        info,
    )


def export_embeddings(bars_frame: pd.DataFrame, checkpoint: Path) -> str:
    """Daily bars -> the ``date, emb_0.., last_price`` CSV that ``checkpoint``'s own feature
    pipeline makes of them: one row per day with complete features, float32 values written
    exactly, so the server gives the same forecast for it as for the bars."""
    loaded = load_checkpoint(checkpoint)
    if not loaded.feature_pipeline:
        raise ValueError(f"{checkpoint} has no feature pipeline")
    pipeline = FeaturePipeline.from_state(loaded.feature_pipeline)
    bars = ohlcv.from_frame(bars_frame)
    embeddings = pipeline.embed(bars).astype(np.float32)
    lines = [",".join(["date", *embedding_columns(pipeline.output_size), PRICE_COLUMN])]
    for day, row, price in zip(bars.dates, embeddings, bars.raw_close, strict=True):
        if np.isfinite(row).all():
            lines.append(",".join([str(day), *(f"{v:.9g}" for v in row), repr(float(price))]))
    return "\n".join(lines) + "\n"
