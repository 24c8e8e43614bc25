"""What forecast distributions cost: quantile vs point head in-process, and one 200-series JSON
request vs 200 single-price requests through a private TorchServe (bench/distribution.py).

    python scripts/bench_quantiles.py                       # prints the Markdown section
    python scripts/bench_quantiles.py --out BENCHMARKS.md   # and writes it into BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench import distribution
from bench.report import publish_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="timed runs per in-process figure")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each served measurement")
    parser.add_argument("--out", type=Path, default=None, help="write the section into this Markdown file")
    args = parser.parse_args(argv)
    results = distribution.run(args.runs, args.repeats)
    command = "python scripts/bench_quantiles.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = distribution.markdown(results, command.strip())
    publish_section(text, results, args.out, distribution.SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
