"""Train an xLSTM forecaster on daily prices and write a seed-format checkpoint with metadata.

    python scripts/train.py --dataset sp500 --output models/sp500_xlstm.pt      # the default model
    python scripts/train.py --data prices.csv --output models/mine.pt           # any OHLCV CSV
    python scripts/train.py --data embeddings.csv --output models/emb.pt        # emb_0.., last_price

An OHLCV CSV (Date, Open, High, Low, Close, Volume; Adj Close optional; any case) gets the
feature pipeline (fitted on the training span, stored in the checkpoint: the model then also
accepts raw prices). An embeddings CSV trains on the given embeddings (the model accepts
embeddings only). Targets: simple returns ``prediction_offset + k`` trading days after the
window's last day, k = 0..horizon-1 (offset 1 = the next day). Split: chronological
train / validation / test; early stopping on validation. Same data + seed + threads = same
weights.
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
from alm_forecaster.train import datasets
from alm_forecaster.train.training import TrainConfig, train


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=sorted(datasets.ARCH_OHLCV), help="a daily series shipped with arch")
    source.add_argument("--data", type=Path, help="an OHLCV CSV or an embeddings + last_price CSV")
    parser.add_argument("--output", type=Path, required=True, help="checkpoint path (.pt)")
    parser.add_argument("--first-row", type=int, default=0, help="use rows from this one (0-based)")
    parser.add_argument("--last-row", type=int, default=None, help="use rows before this one")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (part of reproducibility)")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)), default=getattr(defaults, f.name)
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    try:
        series = datasets.load_arch(args.dataset) if args.dataset else datasets.load_csv(args.data)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.first_row or args.last_row is not None:
        series = datasets.slice_rows(series, args.first_row, args.last_row)
    print(f"data: {series.name} ({len(series)} rows, sha256 {series.sha256[:12]}...)", file=sys.stderr)
    start = time.perf_counter()
    result = train(series, cfg, progress=True)
    elapsed = time.perf_counter() - start
    result.checkpoint["metadata"]["command"] = "python scripts/train.py " + shlex.join(argv or sys.argv[1:])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(result.checkpoint, args.output)
    load_checkpoint(args.output)  # the file must load the way the server loads it
    meta = result.checkpoint["metadata"]
    print(
        f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB) in {elapsed:.1f} s; "
        f"best epoch {result.best_epoch} of {meta['epochs_run']}",
        file=sys.stderr,
    )
    print(json.dumps({"spans": meta["spans"], "metrics": meta["metrics"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
