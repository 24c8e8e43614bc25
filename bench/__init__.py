"""Benchmarks of the forecaster: in process, through a private TorchServe, and a worker's start.

``scripts/bench_serve.py`` (the whole run and BENCHMARKS.md), ``scripts/bench_model.py`` (the
forward alone) and ``scripts/bench_parse.py`` (one request's parse) are the commands; the
modules here are split by subject: `machine` (the machine and its load), `inprocess` (forward
and parse timed in this process), `load` (the load generator), `server` (the private
TorchServe), `cells` (a configuration measured at each concurrency), `profile` and
`worker_start` (where a worker's time goes), `findings`, `report`, NOTES.md and `plot` (the
output), `suite` (the whole run).
"""

from pathlib import Path

#: The checkout the benchmarks run from (the project is installed editable): models/, docs/.
ROOT = Path(__file__).resolve().parent.parent
