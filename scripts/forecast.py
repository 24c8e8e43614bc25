"""Offline forecasts: the same response objects the server returns, one JSON line per file.

    python scripts/forecast.py --checkpoint models/sp500_xlstm.pt FILE.csv [FILE.csv ...]

The model is loaded once and the files go through one batched forward (``--batch-size``
files at a time), so the per-file cost is the forward, not start-up. A bad file is reported
on stderr with its name; the others are still forecast; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from alm_forecaster.errors import CheckpointError
from alm_forecaster.forecaster import Forecaster, configure_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="CSV files (embeddings or, with a pipeline, OHLCV)")
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--name", help="model name in the responses (default: checkpoint file stem)")
    parser.add_argument("--version", default="1.0")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--seq-len", type=int, default=None, help="override the window length")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all usable cores)")
    parser.add_argument("--batch-size", type=int, default=64, help="files per forward pass")
    args = parser.parse_args(argv)

    configure_threads(args.threads)
    try:
        forecaster = Forecaster.from_checkpoint(args.checkpoint, args.name, args.version, args.device, args.seq_len)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for path, outcome in forecaster.predict_files(args.files, args.batch_size):
        if outcome.ok:
            print(json.dumps(outcome.body), flush=True)
        else:
            failed += 1
            print(f"{path}: {outcome.body['error']}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
