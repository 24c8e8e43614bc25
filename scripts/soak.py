"""Soak test: C concurrent clients for N minutes against a loopback TorchServe.

    python scripts/soak.py [--minutes 10] [--concurrency 16] [--bad-fraction 0.2] [--report soak.json]

The command of alm_ops.soak (``--help``: every option); the code is there.
"""

from alm_ops.soak import main

if __name__ == "__main__":
    raise SystemExit(main())
