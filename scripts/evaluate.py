"""Evaluate a checkpoint on held-out data; write a report.

    python scripts/evaluate.py models/sp500_xlstm.pt sp500 --out docs        # arch's S&P 500
    python scripts/evaluate.py CKPT prices.csv --out reports/                 # an OHLCV CSV
    python scripts/evaluate.py CKPT embeddings.csv                            # emb_0.., last_price
    python scripts/evaluate.py models/alm_quantiles.pt sp500 wti --unseen nasdaq --out docs \
        --stem distribution-report                                            # a quantile model
    python scripts/evaluate.py models/alm_quantiles.pt ust:3M ust:6M ust:1Y ust:2Y ust:5Y ust:10Y \
        ust:30Y --out docs --stem rates-report                                # ... on level series

Point models, on the held-out chronological tail: per horizon step MAE, RMSE, MAPE and
directional accuracy against naive persistence (price stays at the last close), the training
span's drift and a ridge model on the same inputs; Diebold-Mariano tests.

Quantile models, from the checkpoint's held-out start on, on the series it was trained on and
on --unseen ones: coverage, pinball, Winkler, the 5% VaR backtest and point MAE against
historical simulation, GARCH(1,1)-t and persistence (`alm_forecaster.train.distribution_report`).

Level series (``ust:<tenor>``, the Treasury par yields in data/, or ``file.csv@level``; all the
series of one run, which must then all be levels) get the rates report instead
(`alm_forecaster.train.rates_report`): from the checkpoint's level held-out start
(``spans.level_holdout_start``) on, coverage and pinball per step against historical simulation,
filtered HS and GARCH(1,1)-t, the step-1 VaR backtests, the same series shifted down by 3 (negative
rates) through the served path, the split by level at the origin (from
``spans.level_validation_start`` on) and a verdict table; pinball losses in bp of the series' units.
``--every N`` (quantile models) takes an origin every N days (a quick look; reports use 1).

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
from alm_forecaster.kinds import LEVEL
from alm_forecaster.train import datasets, distribution_report, price_series, rates_report, rates_text
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
    parser.add_argument("--every", type=int, default=1, help="quantile models: an origin every N days (default 1)")
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
    try:
        series = [(spec, "trained", price_series.load(spec)) for spec in args.data]
        series += [(spec, "unseen", price_series.load(spec)) for spec in args.unseen]
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kinds = {s.kind for _, _, s in series}
    if LEVEL.name in kinds:
        if len(kinds) > 1:
            print("error: evaluate level series and prices in separate runs (two reports)", file=sys.stderr)
            return 2
        return evaluate_levels(args, command, forecaster, [s for _, _, s in series])
    start = args.holdout_start or forecaster.loaded.metadata.get("spans", {}).get("holdout_start")
    if not start:
        print("error: the checkpoint records no held-out start; pass --holdout-start", file=sys.stderr)
        return 2
    results = distribution_report.evaluate(
        forecaster, [(s.name, role, s.dates, s.prices) for _, role, s in series], start, args.every
    )
    written = distribution_report.write(results, args.out, args.stem or f"{forecaster.name}-distribution", command)
    for m, _ in results["series"]:
        for t in m["targets"]:
            print(f"{m['series']}: {t['target']}: {t['figure']} -> {distribution_report.verdict_word(t)}")
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def evaluate_levels(args: argparse.Namespace, command: str, forecaster: Forecaster, series: list) -> int:
    """The rates report of level series, from the checkpoint's level held-out start on."""
    spans = rates_report.spans_of(forecaster)
    start = args.holdout_start or spans.get("holdout_start")
    if not start:
        print("error: the checkpoint records no level held-out start; pass --holdout-start", file=sys.stderr)
        return 2
    try:
        results = rates_report.evaluate(forecaster, series, start, spans.get("validation_start"), args.every)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = rates_text.write(results, args.out, args.stem or f"{forecaster.name}-rates", command)
    for row in rates_report.verdict(results):
        print(f"{row['target']}: {row['figure']} -> {distribution_report.verdict_word(row)}")
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
