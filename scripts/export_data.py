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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alm_forecaster import datasets, ohlcv  # noqa: E402
from alm_forecaster.checkpoint import load_checkpoint  # noqa: E402
from alm_forecaster.contract import embedding_columns  # noqa: E402
from alm_forecaster.features import FeaturePipeline  # noqa: E402


def embeddings_csv(frame, checkpoint: Path) -> str:  # noqa: ANN001 - pandas.DataFrame
    loaded = load_checkpoint(checkpoint)
    if not loaded.feature_pipeline:
        raise ValueError(f"{checkpoint} has no feature pipeline")
    pipeline = FeaturePipeline.from_state(loaded.feature_pipeline)
    bars = ohlcv.from_frame(frame)
    embeddings = pipeline.embed(bars).astype(np.float32)
    lines = [",".join(["date", *embedding_columns(pipeline.output_size), "last_price"])]
    for day, row, price in zip(bars.dates, embeddings, bars.raw_close, strict=True):
        if np.isfinite(row).all():
            lines.append(",".join([str(day), *(f"{v:.9g}" for v in row), repr(float(price))]))
    return "\n".join(lines) + "\n"


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
        args.output.write_text(embeddings_csv(frame, args.embeddings))
    else:
        frame.to_csv(args.output, date_format="%Y-%m-%d")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
