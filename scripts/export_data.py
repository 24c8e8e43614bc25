"""Write an arch daily series (or its tail) to CSV: OHLCV, or embeddings made by a checkpoint.

    python scripts/export_data.py sp500 data/sp500.csv                       # the whole series
    python scripts/export_data.py sp500 examples/sp500_tail.csv --tail 100   # a request-sized file
    python scripts/export_data.py sp500 examples/sp500_tail_embeddings.csv --tail 100 \\
        --embeddings models/sp500_xlstm.pt                                   # the same days as embeddings

OHLCV files have ISO dates and the columns Date, Open, High, Low, Close, Adj Close, Volume.
Embedding files (``date, emb_0.., last_price``) are built by the checkpoint's own feature
pipeline, one row per day with complete features (the first 60 rows of the tail are the
lookback), float32 values written exactly: sent to the server they give the same forecast
as the OHLCV file they come from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alm_forecaster.train import datasets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(datasets.ARCH_OHLCV))
    parser.add_argument("output", type=Path)
    parser.add_argument("--tail", type=int, default=None, help="only the last N rows")
    parser.add_argument("--embeddings", type=Path, default=None, help="write embeddings made by this checkpoint")
    args = parser.parse_args(argv)
    frame = datasets.frame(args.dataset)
    if args.tail:
        frame = frame.iloc[-args.tail :]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.embeddings:
        args.output.write_text(datasets.export_embeddings(frame, args.embeddings))
    else:
        frame.to_csv(args.output, date_format="%Y-%m-%d")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
