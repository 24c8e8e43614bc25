"""What a book costs: joint scenarios in-process and through a private TorchServe, and the
worker's peak memory (bench/books.py), against the issue's targets.

    python scripts/bench_books.py                       # prints the Markdown section
    python scripts/bench_books.py --out BENCHMARKS.md   # and writes it into BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench import books
from bench.report import publish_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each book")
    parser.add_argument("--out", type=Path, default=None, help="write the section into this Markdown file")
    args = parser.parse_args(argv)
    results = books.run(args.repeats)
    command = "python scripts/bench_books.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = books.markdown(results, command.strip())
    publish_section(text, results, args.out, books.SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
