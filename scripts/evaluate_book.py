"""The book report: the path engine on three held-out books against joint baselines.

    python scripts/evaluate_book.py models/alm_quantiles.pt --out docs

Books (alm_forecaster.train.book_data): ``us_equity`` (20 US stocks from skfolio's
sp500_dataset.csv.gz, long-only, held out from the checkpoint's price held-out start),
``equity_commodity`` (S&P 500, NASDAQ and WTI from arch, long-short, same start) and
``ust_steepener`` (the 2Y and 10Y Treasury yields of data/, a DV01-neutral steepener, held out
from the checkpoint's level held-out start). Per origin the book goes through the served path
(Forecaster.predict on a KServe book request) and the engine's paths are scored against
multivariate historical simulation, multivariate filtered HS, constant-correlation GARCH(1,1)-t,
the engine's marginals with independent paths and the engine without the model's marginals, at
1, 10, 20, 60 and 250 days (alm_forecaster.train.book_report). Writes <stem>.md, <stem>.json and
PNG charts to --out. ``--every book=k`` changes a book's origin spacing, ``--books`` picks books.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from alm_forecaster.errors import CheckpointError
from alm_forecaster.forecaster import Forecaster, configure_threads
from alm_forecaster.train import book_backtest, book_report
from alm_forecaster.train.book_data import BOOKS
from alm_forecaster.train.distribution_report import verdict_word


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--stem", default="book-report")
    parser.add_argument("--books", default=",".join(BOOKS), help=f"comma-separated, of: {', '.join(BOOKS)}")
    parser.add_argument("--every", default="", help="origin spacing per book, e.g. us_equity=10,ust_steepener=5")
    parser.add_argument("--history", type=int, default=book_backtest.HISTORY, help="rows of history per origin")
    parser.add_argument("--paths", type=int, default=book_backtest.PATHS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    command = "python scripts/evaluate_book.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    configure_threads(args.threads)
    books = [b.strip() for b in args.books.split(",") if b.strip()]
    unknown = [b for b in books if b not in BOOKS]
    if unknown:
        parser.error(f"unknown book {unknown[0]!r}; choose of {', '.join(BOOKS)}")
    try:
        every = {k: int(v) for k, v in (item.split("=") for item in args.every.split(",") if item.strip())}
    except ValueError:
        parser.error("--every is BOOK=K,BOOK=K")
    began = time.perf_counter()
    try:
        forecaster = Forecaster.from_checkpoint(args.checkpoint, device="cpu")
        results = book_report.evaluate(
            forecaster, books, every, args.history, args.paths, args.seed, progress=_progress
        )
    except (ValueError, OSError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = book_report.write(results, args.out, args.stem, command, time.perf_counter() - began)
    for row in book_report.verdict(results):
        print(f"{row['target']}: {row['figure']} -> {verdict_word(row)}")
    print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def _progress(book: str, done: int, total: int) -> None:
    if done == total or done % 25 == 0:
        print(f"{book}: {done}/{total} origins", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
