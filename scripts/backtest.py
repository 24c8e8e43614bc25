"""Backtest a quantile model on your own price series, through the code path the server runs.

    python scripts/backtest.py --checkpoint models/alm_quantiles.pt prices.csv
    python scripts/backtest.py --checkpoint models/alm_quantiles.pt prices.csv --start 2020-01-01 --plot fan.png

prices.csv: a Date column and one price column (Close, Adj Close, Price, Value, or the only
other column; any case), oldest first; OHLCV files are read through their close. A level series
(a rate, a spread: values that can be zero or negative) is ``rates.csv@level`` or a Treasury
tenor ``ust:10Y``: sent with the level kind, scored in differences, losses in bp of its units
(0.01 of a unit). Rolling
origins: every day (--every N: every Nth) from --start (default: the first day with a full
window behind it) that has the model's K days after it. Prints, per step, coverage of the 50%
and 90% intervals, mean pinball loss and Winkler score, for the model and for historical
simulation and GARCH(1,1)-t fitted on the same data; the 5% VaR backtest at step 1 (Kupiec,
Christoffersen, Basel zone of the last 250 days); point MAE against persistence.

A book: a wide CSV (Date,<name1>,<name2>,..., one row per common day) with the book's
exposures (P&L per unit of change: a price's value held, a level's P&L per unit) and the level
columns' kinds, as the served CSV book takes them:

    python scripts/backtest.py --checkpoint models/alm_quantiles.pt book.csv \
        --exposures a=1e6,b=-5e5 --kinds b=level --start 2020-01-01 --every 5

Each origin's last --history rows go through the served path (a KServe book request) and the
path engine's book P&L is scored at 1, 10, 20, 60 and 250 days against multivariate historical
simulation, multivariate filtered HS, constant-correlation GARCH(1,1)-t, the engine's marginals
with independent paths and the engine without the model's marginals: VaR 95% / 99% violations
(Kupiec, Christoffersen), the Basel light per 250-day window, the Acerbi-Szekely ES test,
pinball over levels 0.01..0.99, energy and variogram scores (the book report's tables).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from alm_forecaster.book import pairs
from alm_forecaster.errors import CheckpointError
from alm_forecaster.forecaster import Forecaster, configure_threads
from alm_forecaster.train import backtest, book_backtest, book_data, price_series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "prices",
        help="a CSV of daily prices (or an arch dataset name: sp500, nasdaq, wti; ust:<tenor>; file.csv@level)",
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--start", default=None, help="first origin date (YYYY-MM-DD)")
    parser.add_argument("--every", type=int, default=1, help="an origin every N days")
    parser.add_argument("--no-baselines", action="store_true", help="skip historical simulation and GARCH")
    parser.add_argument("--plot", type=Path, default=None, help="fan chart PNG (the coverage chart goes beside it)")
    parser.add_argument("--json", type=Path, default=None, help="write the metrics as JSON")
    parser.add_argument("--threads", type=int, default=None)
    book = parser.add_argument_group("a book (a wide CSV)")
    book.add_argument("--exposures", default=None, help="NAME=P&L per unit of change,... (makes it a book)")
    book.add_argument("--kinds", default="", help="NAME=level,... (the other columns are prices)")
    book.add_argument("--history", type=int, default=book_backtest.HISTORY, help="rows of history per origin")
    book.add_argument("--paths", type=int, default=book_backtest.PATHS, help="paths per origin")
    book.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    if args.exposures is not None:
        return backtest_book(args)
    try:
        forecaster = Forecaster.from_checkpoint(args.checkpoint, device="cpu")
        series = price_series.load(args.prices)
        start = int(np.searchsorted(series.dates, np.datetime64(args.start))) if args.start else None
        bt = backtest.run(
            forecaster,
            series.name,
            series.dates,
            series.prices,
            start,
            args.every,
            baselines_too=not args.no_baselines,
            kind=series.kind,
        )
    except (ValueError, OSError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metrics = backtest.metrics(bt)
    print(backtest.table(metrics))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        backtest.fan_chart(bt, args.plot)
        backtest.coverage_chart(metrics, args.plot.with_name(args.plot.stem + "_coverage.png"))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=1))
    return 0


def backtest_book(args: argparse.Namespace) -> int:
    """The book mode: the engine and the joint baselines on the user's wide CSV."""
    try:
        exposures = {name: float(value) for name, value in pairs(args.exposures, "exposures").items()}
        kinds = {name: kind.lower() for name, kind in pairs(args.kinds, "kinds").items()}
        book = book_data.wide_csv(args.prices, exposures, kinds, args.start or "1900-01-01")
        forecaster = Forecaster.from_checkpoint(args.checkpoint, device="cpu")
        bt = book_backtest.run(forecaster, book, args.every, args.history, args.paths, args.seed)
    except (ValueError, OSError, CheckpointError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        print(f"error: {message}", file=sys.stderr)
        return 2
    metrics = book_backtest.metrics(bt)
    print(book_backtest.table(metrics))
    if args.plot:
        from alm_forecaster.train import book_charts

        args.plot.parent.mkdir(parents=True, exist_ok=True)
        book_charts.fan([(metrics, bt)], args.plot)
    if args.json:
        from alm_forecaster.train.book_report import clean

        args.json.write_text(json.dumps(clean(metrics), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
