"""Write an arch daily series (or its tail) to CSV: OHLCV, or embeddings made by a checkpoint.

    python scripts/export_data.py sp500 data/sp500.csv                       # the whole series
    python scripts/export_data.py sp500 examples/sp500_tail.csv --tail 100   # a request-sized file
    python scripts/export_data.py sp500 examples/sp500_tail_embeddings.csv --tail 100 \\
        --embeddings models/sp500_xlstm.pt                                   # the same days as embeddings
    python scripts/export_data.py nasdaq examples/nasdaq_close.csv --tail 300 --close   # one price a day
    python scripts/export_data.py ust:3M examples/ust_3m.csv --tail 300 --close         # one yield a day
    python scripts/export_data.py nasdaq,sp500,wti,ust:10Y examples/portfolio.json --tail 300 --request
                                                                             # many series, one JSON request
    python scripts/export_data.py sp500,wti,ust:2Y,ust:10Y examples/book.csv --tail 500 --wide
                                                                             # a book: aligned series, one CSV

OHLCV files have ISO dates and the columns Date, Open, High, Low, Close, Adj Close, Volume.
Embedding files (``date, emb_0.., last_price``) are built by the checkpoint's own feature
pipeline, one row per day with complete features (the first 60 rows of the tail are the
lookback), float32 values written exactly: sent to the server they give the same forecast
as the OHLCV file they come from. ``--close`` writes ``Date,Close`` (WTI too; a Treasury tenor
``ust:<tenor>`` writes ``Date,<tenor>``, a level series); ``--request`` writes a KServe
time-series ForecastRequest of the named series (their closes or yields, each with its ``kind``,
``horizon`` 5 and every quantile level of the default model); ``--wide`` writes them on their
common days as one CSV, ``Date,<name>,...`` (names without the ``ust:``'s colon: ``ust10y``), a
book's file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from alm_forecaster import kserve
from alm_forecaster.train import datasets, price_series


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "dataset", help="sp500 or nasdaq (wti too with --close or --request; a comma list with --request)"
    )
    parser.add_argument("output", type=Path)
    parser.add_argument("--tail", type=int, default=None, help="only the last N rows")
    parser.add_argument("--embeddings", type=Path, default=None, help="write embeddings made by this checkpoint")
    parser.add_argument("--close", action="store_true", help="write Date,Close only")
    parser.add_argument("--request", action="store_true", help="write a JSON ForecastRequest of the series")
    parser.add_argument("--wide", action="store_true", help="write the series on their common days as one CSV")
    args = parser.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.wide:
        return write_wide(args.dataset.split(","), args.output, args.tail)
    if args.close or args.request:
        names = args.dataset.split(",")
        series = [price_series.load(name) for name in names]
        tail = slice(-args.tail if args.tail else None, None)
        if args.request:
            inputs = [(name, s.dates[tail], s.prices[tail]) for name, s in zip(names, series, strict=True)]
            kinds = {name: s.kind for name, s in zip(names, series, strict=True)}
            document = kserve.request_document("alm_quantiles", inputs, kinds=kinds)
            args.output.write_text(json.dumps(document, indent=1) + "\n")
        else:
            column = names[0].removeprefix(price_series.TREASURY_PREFIX) if series[0].kind != "price" else "Close"
            lines = [f"Date,{column}"] + [
                f"{d},{p!r}" for d, p in zip(series[0].dates[tail], series[0].prices[tail].tolist(), strict=True)
            ]
            args.output.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    frame = datasets.frame(args.dataset)
    if args.tail:
        frame = frame.iloc[-args.tail :]
    if args.embeddings:
        args.output.write_text(datasets.export_embeddings(frame, args.embeddings))
    else:
        frame.to_csv(args.output, date_format="%Y-%m-%d")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def write_wide(specs: list[str], output: Path, tail: int | None) -> int:
    """The series on their common days: Date,<name1>,<name2>,... (a book's CSV)."""
    series = [price_series.load(spec) for spec in specs]
    common = series[0].dates
    for s in series[1:]:
        common = np.intersect1d(common, s.dates)
    common = common[-tail:] if tail else common
    names = [spec.replace(":", "").lower() for spec in specs]
    columns = [s.prices[np.searchsorted(s.dates, common)].tolist() for s in series]
    lines = ["Date," + ",".join(names)] + [
        f"{d}," + ",".join(repr(c[i]) for c in columns) for i, d in enumerate(common)
    ]
    output.write_text("\n".join(lines) + "\n")
    print(f"wrote {output} ({len(common)} common days, {common[0]} .. {common[-1]})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
