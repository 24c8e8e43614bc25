"""A book sent from the command line: a wide CSV of aligned series and its exposures.

    python scripts/client.py book.csv --book --exposures spx=1e6,wti=-5e5,ust10y=-8e4 \\
           --kinds ust10y=level --horizon 250 --quantiles 0.01,0.05,0.5,0.95,0.99 \\
           [--paths 10000] [--seed 0] [--risk-levels 0.95,0.99] [--format jsonl|csv]

The file (``Date,<name1>,<name2>,...``, one row per common business day, oldest first) goes to
the model as the multipart field ``data`` with the book's options as fields (the headers of
a curl user: X-Book-Exposures, X-Series-Kinds, ...; see alm_forecaster/book.py), through the
bulk client's retries. ``jsonl``: the server's answer (a ForecastResponse with its ``book``);
``csv``: the book's table, one row per step: its P&L quantiles, then VaR and ES per risk level.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys

#: Command-line option -> the request's field (alm_forecaster.book.CSV_OPTIONS's names).
FIELDS = {"exposures": "exposures", "kinds": "kinds", "paths": "paths", "seed": "seed", "risk_levels": "risk_levels"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("a book (--book: one wide CSV, joint scenarios, VaR and ES)")
    group.add_argument("--book", action="store_true", help="send the one FILE as a book")
    group.add_argument("--exposures", help="NAME=P&L per unit of change,... (e.g. spx=1e6,ust10y=-8e4)")
    group.add_argument("--kinds", help="NAME=level,... for the series that are not prices")
    group.add_argument("--paths", type=int, help="scenario paths (default: the server's, 10,000)")
    group.add_argument("--seed", type=int, help="the paths' seed (same book and seed, same answer)")
    group.add_argument("--risk-levels", dest="risk_levels", help="VaR/ES levels, e.g. 0.95,0.99")


def fields(args: argparse.Namespace) -> dict[str, str]:
    """The request's multipart fields of a book."""
    out = {name: str(getattr(args, option)) for option, name in FIELDS.items() if getattr(args, option) is not None}
    out |= {name: str(getattr(args, name)) for name in ("horizon", "quantiles") if getattr(args, name) is not None}
    return out


def run(client, args: argparse.Namespace) -> int:  # noqa: ANN001 - alm_ops.bulk.Client
    """Send the book; write its answer; exit status 0 with a book, 1 otherwise."""
    if len(args.files) != 1 or not args.exposures:
        print("error: --book takes one FILE and --exposures", file=sys.stderr)
        return 2
    result = client.forecast(args.files[0], fields(args))
    if result.answer is None or "book" not in result.answer:
        print(f"{args.files[0]}: HTTP {result.status}: {result.error}", file=sys.stderr)
        return 1
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "csv":
            csv.writer(out, lineterminator="\n").writerows(rows(result.answer["book"]))
        else:
            out.write(json.dumps({"file": result.file, "status": result.status, "forecast": result.answer}) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def rows(book: dict) -> list[list]:
    """The book's table: one row per step (quantiles, then VaR and ES per risk level)."""
    columns = [(f"q{level}", values) for level, values in book["quantiles"].items()]
    columns += [(f"var{level}", values) for level, values in book["var"].items()]
    columns += [(f"es{level}", values) for level, values in book["es"].items()]
    steps = len(columns[0][1])
    return [["step", *(name for name, _ in columns)]] + [[h + 1, *(v[h] for _, v in columns)] for h in range(steps)]
