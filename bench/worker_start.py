"""What a TorchServe worker does before it is READY, in a fresh Python, with the clock read after
each step; prints the timestamps as one JSON object (`bench.profile.profile_worker_start` runs it).

    python -m bench.worker_start CHECKPOINT

The imports happen inside `main` on purpose: importing them is what is being timed.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    marks = {"interpreter": time.time()}
    import torch

    marks["import_torch"] = time.time()
    import ts.model_service_worker  # noqa: F401  (what the worker imports before it listens)

    marks["import_ts_worker"] = time.time()
    _import_handler()
    marks["import_handler"] = time.time()
    from pathlib import Path

    from alm_forecaster.checkpoint import load_checkpoint, load_step_times
    from alm_forecaster.forecaster import Forecaster, configure_threads

    configure_threads(1)
    path = Path((argv if argv is not None else sys.argv[1:])[0])
    marks.update(load_step_times(path))
    start = time.time()
    loaded = load_checkpoint(path)
    Forecaster(loaded, "profile", device=torch.device("cpu"))
    marks["_load_checkpoint_s"] = time.time() - start
    print(json.dumps(marks))
    return 0


def _import_handler() -> None:
    """Import handlers/xlstm_handler.py as the worker does (from the unpacked archive, where it
    is a top-level module next to alm_forecaster/)."""
    import importlib.util

    from bench import ROOT

    spec = importlib.util.spec_from_file_location("xlstm_handler", ROOT / "handlers" / "xlstm_handler.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["xlstm_handler"] = module
    spec.loader.exec_module(module)


if __name__ == "__main__":
    raise SystemExit(main())
