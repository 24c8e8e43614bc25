"""Operations under load: scaling, a version rollout, a killed worker and a stopped server,
each measured with 8 clients forecasting continuously on a private loopback TorchServe.

    python scripts/ops_under_load.py [--clients 8] [--ops scale-down,rollout] [--json PATH]

The command of alm_ops.ops_under_load (``--help``: every option); the code is there.
"""

from alm_ops.ops_under_load import main

if __name__ == "__main__":
    raise SystemExit(main())
