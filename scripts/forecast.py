"""Offline forecasts: the same response objects the server returns, one JSON line per file.

    python scripts/forecast.py FILE.csv [FILE.json ...]                # the served default model
    python scripts/forecast.py --kind level examples/ust_3m.csv        # a rate: a level series
    python scripts/forecast.py --checkpoint models/sp500_xlstm.pt FILE.csv

Without ``--checkpoint``, the model the server starts first (config.properties' load_models),
with the checkpoint, name and version of its archive config (archive_configs/<name>.yaml).
``--kind`` (price, the default, or level) applies to the CSV files; a JSON file (a KServe
ForecastRequest) carries a kind on each input.

The model is loaded once and the files go through one batched forward (``--batch-size``
files at a time), so the per-file cost is the forward, not start-up. A bad file is reported
on stderr with its name; the others are still forecast; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alm_forecaster.errors import CheckpointError
from alm_forecaster.forecaster import Forecaster, configure_threads
from alm_ops import archive, serve_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="CSV files (embeddings or, with a pipeline, OHLCV)")
    parser.add_argument("--checkpoint", type=Path, help="default: the served default model's checkpoint")
    parser.add_argument("--name", help="model name in the responses (default: the model's, or the file stem)")
    parser.add_argument("--version", default=None, help="model version in the responses (default: its archive's)")
    parser.add_argument("--kind", default=None, help="the CSV files' series kind: price (default) or level")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--seq-len", type=int, default=None, help="override the window length")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all usable cores)")
    parser.add_argument("--batch-size", type=int, default=64, help="files per forward pass")
    args = parser.parse_args(argv)

    configure_threads(args.threads)
    try:
        checkpoint, name, version = args.checkpoint, args.name, args.version
        if checkpoint is None:
            served = archive.resolve_spec(serve_config.load_models()[0])
            checkpoint, name, version = served.checkpoint, name or served.name, version or served.version
        forecaster = Forecaster.from_checkpoint(checkpoint, name, version or "1.0", args.device, args.seq_len)
    except (CheckpointError, ValueError, IndexError, archive.ArchiveError) as exc:
        print(f"error: {exc or 'config.properties names no model in load_models'}", file=sys.stderr)
        return 2
    failed = 0
    for path, outcome in forecaster.predict_files(args.files, args.batch_size, args.kind):
        if outcome.ok:
            print(outcome.json().decode(), flush=True)
        else:
            failed += 1
            print(f"{path}: {outcome.message}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
