"""Train a quantile xLSTM on single-price daily series and write its checkpoint.

    python scripts/train_quantiles.py --output models/alm_quantiles.pt          # the default model
    python scripts/train_quantiles.py --series sp500 --series rates.csv@level --output models/mine.pt

Series: arch's ``sp500``, ``nasdaq``, ``wti``, a Treasury tenor ``ust:3M`` .. ``ust:30Y``
(data/, a level series) or a CSV path (a Date column and one price column, or OHLCV read
through its close; ``path@level`` for a level series). Default: the S&P 500 and WTI prices and
the eleven Treasury tenors. Spans, per kind: fit before --validation-start, early stopping on
[--validation-start, --calibration-start), per-level recalibration on [--calibration-start,
--holdout-start) (level series: the --level-* spans); nothing from the held-out start on is
read. Same data, seed and threads give the same weights.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import fields
from pathlib import Path

import torch

from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.train import price_series
from alm_forecaster.train.quantile_training import QuantileTrainConfig, train

#: The default model's series: two prices from arch and the Treasury curve (data/).
TENORS = ("1M", "3M", "6M", "1Y", "2Y", "3Y", "5Y", "7Y", "10Y", "20Y", "30Y")
DEFAULT_SERIES = ["sp500", "wti", *(f"ust:{tenor}" for tenor in TENORS)]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--series", action="append", help="arch dataset, ust:<tenor> or CSV path (repeatable; default: DEFAULT_SERIES)"
    )
    parser.add_argument("--output", type=Path, required=True, help="checkpoint path (.pt)")
    defaults = QuantileTrainConfig()
    for f in fields(QuantileTrainConfig):
        value = getattr(defaults, f.name)
        if isinstance(value, tuple):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=float, nargs="+", default=list(value))
        else:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(value), default=value)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in fields(QuantileTrainConfig)}
    cfg = QuantileTrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    try:
        series = [price_series.load(spec) for spec in args.series or DEFAULT_SERIES]
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for s in series:
        print(
            f"data: {s.name} ({len(s.prices)} days {s.dates[0]}..{s.dates[-1]}, sha256 {s.sha256[:12]})",
            file=sys.stderr,
        )
    started = time.perf_counter()
    checkpoint = train(series, cfg, log=lambda line: print(line, file=sys.stderr))
    checkpoint["metadata"]["command"] = "python scripts/train_quantiles.py " + shlex.join(argv or sys.argv[1:])
    checkpoint["metadata"]["training_seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, args.output)
    loaded = load_checkpoint(args.output)  # the file must load the way the server loads it
    print(
        f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB) in "
        f"{checkpoint['metadata']['training_seconds']:.0f} s; levels {loaded.quantile_head.levels}",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "offsets": {k: o.round(4).tolist() for k, o in loaded.quantile_head.offsets.items()},
                "windows": checkpoint["metadata"]["window_counts"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
