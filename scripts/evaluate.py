"""Evaluate a checkpoint on the held-out chronological tail of a daily series; write a report.

    python scripts/evaluate.py models/sp500_xlstm.pt sp500 --out docs        # arch's S&P 500
    python scripts/evaluate.py CKPT prices.csv --out reports/                 # an OHLCV CSV
    python scripts/evaluate.py CKPT embeddings.csv                            # emb_0.., last_price

Per horizon step: MAE, RMSE, MAPE and directional accuracy against naive persistence (price
stays at the last close), the training span's drift and a ridge model on the same inputs;
Diebold-Mariano tests; a Markdown report, a JSON file and PNG plots.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from alm_forecaster.errors import CheckpointError
from alm_forecaster.train import datasets
from alm_forecaster.train.evaluation import evaluate, verdict, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("data", help="a CSV path, or an arch dataset name: " + ", ".join(sorted(datasets.ARCH_OHLCV)))
    parser.add_argument("--out", type=Path, default=Path("reports"), help="directory for the report and plots")
    parser.add_argument("--stem", default=None, help="report file name stem (default: <model>-report)")
    parser.add_argument("--name", default=None, help="model name in the report (default: the file stem)")
    parser.add_argument(
        "--prediction-offset",
        type=int,
        default=None,
        help="override the checkpoint's prediction_offset (seed checkpoints: 2)",
    )
    args = parser.parse_args(argv)
    try:
        series = datasets.load(args.data)
        ev = evaluate(args.checkpoint, series, args.name, args.prediction_offset)
    except (ValueError, OSError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = "python scripts/evaluate.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    path = write_report(ev, args.out, args.stem, command)
    print("\n".join(verdict(ev)))
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
