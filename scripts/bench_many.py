"""Many series per request and the lone request, before and after, in one run (bench/many_series.py).

    python scripts/bench_many.py --before ../earlier-checkout               # prints the section
    python scripts/bench_many.py --before ../earlier-checkout --out BENCHMARKS.md

``--before``: a checkout of an earlier commit with its kernel built (scripts/setup_env.sh, or
this checkout's alm_forecaster/native/_build copied when the kernel sources are the same).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench import many_series
from bench.report import publish_section

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="an earlier checkout")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="before/after pairs, interleaved; figures are medians")
    parser.add_argument("--out", type=Path, default=None, help="write the section into this Markdown file")
    args = parser.parse_args(argv)
    rounds = {"before": [], "after": []}
    for _ in range(args.rounds):  # interleaved, so that a noisy minute hits both
        rounds["before"].append(many_series.run_checkout(args.before.resolve(), args.repeats, floor=False))
        rounds["after"].append(many_series.run_checkout(ROOT, args.repeats, floor=True))
    before, after = (many_series.medians(rounds[side]) for side in ("before", "after"))
    command = "python scripts/bench_many.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = many_series.markdown(before, after, command.strip())
    publish_section(text, rounds, args.out, "many-series")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
