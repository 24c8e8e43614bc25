"""Build the compiled recurrence kernel (alm_forecaster/native/recurrence.cpp).

    python scripts/build_native.py [--verbose] [--quiet-failure]

The command the set-up script, CI and the image run; the same as ``python -m alm_forecaster.native``
(see there). Exits non-zero with a message when the build fails.
"""

from __future__ import annotations

from alm_forecaster.native.__main__ import main

if __name__ == "__main__":
    raise SystemExit(main())
