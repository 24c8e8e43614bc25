"""Build the compiled kernel (``recurrence.cpp``) into ``_build/`` and say where it is: the
native build (this CPU's extensions) and the portable one (any CPU of the architecture).

    python -m alm_forecaster.native [--only native|portable] [--verbose] [--quiet-failure]

A no-op when the build is up to date. Exits 1 with the compiler's message when the build
fails; with ``--quiet-failure`` a failed build is one warning line and exit 0, for a set-up
that goes on without the kernel (the service then runs the PyTorch recurrences: the same
forecasts, slower). `alm_forecaster.native.build` also runs this module in a child process
when the calling process has already loaded a build.
"""

from __future__ import annotations

import argparse
import sys
import time

from alm_forecaster import native


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m alm_forecaster.native",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only", choices=[v.name for v in native.VARIANTS], help="build this one only (default: all of them)"
    )
    parser.add_argument("--verbose", action="store_true", help="show the compiler commands and output")
    parser.add_argument(
        "--quiet-failure",
        action="store_true",
        help="a failed build is one warning line and exit 0 (the set-up goes on without it)",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    try:
        names = (args.only,) if args.only else tuple(v.name for v in native.VARIANTS)
        native.build(verbose=args.verbose, names=names)
    except RuntimeError as exc:
        if args.quiet_failure:
            print(_warning(exc), file=sys.stderr)
            return 0
        print(f"error: could not build the native recurrence kernel: {exc}", file=sys.stderr)
        print("The service still works without it (pure PyTorch fallback), only slower.", file=sys.stderr)
        return 1
    paths = [native.library_path(name) for name in names]
    for path in paths:
        if not path.is_file():
            print(f"error: build reported success but {path} does not exist", file=sys.stderr)
            return 1
    print(f"built {', '.join(map(str, paths))} in {time.perf_counter() - started:.1f} s")
    return 0


def _warning(exc: RuntimeError) -> str:
    """One line: the compiler's first error line, what the missing kernel costs, where to look."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((line for line in lines if "error" in line.lower() and "failed" not in line), lines[-1])
    return (
        f"warning: the compiled recurrence kernel was not built ({reason[:200]}): forecasts are the same, "
        f"on the slower PyTorch path. Details: {sys.executable} -m alm_forecaster.native --verbose"
    )


if __name__ == "__main__":
    raise SystemExit(main())
