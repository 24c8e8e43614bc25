"""Evaluate a checkpoint on held-out data; write a report.

    python scripts/evaluate.py models/sp500_xlstm.pt sp500 --out docs        # arch's S&P 500
    python scripts/evaluate.py CKPT prices.csv --out reports/                 # an OHLCV CSV
    python scripts/evaluate.py CKPT embeddings.csv                            # emb_0.., last_price
    python scripts/evaluate.py models/alm_quantiles.pt sp500 wti --unseen nasdaq --out docs \
        --stem distribution-report                                            # a quantile model

Point models, on the held-out chronological tail: per horizon step MAE, RMSE, MAPE and
directional accuracy against naive persistence (price stays at the last close), the training
span's drift and a ridge model on the same inputs; Diebold-Mariano tests.

Quantile models, from the checkpoint's held-out start on, on the series it was trained on and
on --unseen ones: coverage, pinball, Winkler, the 5% VaR backtest and point MAE against
historical simulation, GARCH(1,1)-t and persistence (`alm_forecaster.train.distribution_report`).

Either way: a Markdown report, a JSON file and PNG plots.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.errors import CheckpointError
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.train import datasets, distribution_report, price_series
from alm_forecaster.train.evaluation import evaluate, verdict, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument(
        "data",
        nargs="+",
        help="a CSV path, or an arch dataset name (sp500, nasdaq; wti too for "
        "quantile models); several for quantile models",
    )
    parser.add_argument(
        "--unseen", action="append", default=[], help="quantile models: a series never used in training"
    )
    parser.add_argument(
        "--holdout-start", default=None, help="quantile models: first origin (default: the checkpoint's)"
    )
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
    command = "python scripts/evaluate.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        loaded = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if loaded.quantile_head is not None:
        return evaluate_quantiles(args, command)
    if len(args.data) != 1:
        parser.error("a point model is evaluated on one series")
    try:
        series = datasets.load(args.data[0])
        ev = evaluate(args.checkpoint, series, args.name, args.prediction_offset)
    except (ValueError, OSError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    path = write_report(ev, args.out, args.stem, command)
    print("\n".join(verdict(ev)))
    print(f"wrote {path}", file=sys.stderr)
    return 0


def evaluate_quantiles(args: argparse.Namespace, command: str) -> int:
    forecaster = Forecaster.from_checkpoint(args.checkpoint, args.name, device="cpu")
    start = args.holdout_start or forecaster.loaded.metadata.get("spans", {}).get("holdout_start")
    if not start:
        print("error: the checkpoint records no held-out start; pass --holdout-start", file=sys.stderr)
        return 2
    try:
        series = [(spec, "trained", price_series.load(spec)) for spec in args.data]
        series += [(spec, "unseen", price_series.load(spec)) for spec in args.unseen]
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results = distribution_report.evaluate(
        forecaster, [(s.name, role, s.dates, s.prices) for _, role, s in series], start
    )
    written = distribution_report.write(results, args.out, args.stem or f"{forecaster.name}-distribution", command)
    for m, _ in results["series"]:
        for t in m["targets"]:
            print(f"{m['series']}: {t['target']}: {t['figure']} -> {distribution_report.verdict_word(t)}")
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
