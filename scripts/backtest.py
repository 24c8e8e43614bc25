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
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from alm_forecaster.errors import CheckpointError
from alm_forecaster.forecaster import Forecaster, configure_threads
from alm_forecaster.train import backtest, price_series


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
    args = parser.parse_args(argv)
    configure_threads(args.threads)
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


if __name__ == "__main__":
    raise SystemExit(main())
