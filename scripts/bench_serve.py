"""Load benchmark: in-process forward vs TorchServe end to end vs the plain step-by-step path.

    python scripts/bench_serve.py --out BENCHMARKS.md          # the full run (minutes of CPU)
    python scripts/bench_serve.py --quick --out /tmp/bench.md  # smoke run, tiny model

One run measures, for the full seed-size model (``models/seed_untrained.pt``, random weights,
written when missing) and the default model (``models/sp500_xlstm.pt``):

* in process (bench.inprocess, as scripts/bench_model.py): the fast forward, the same forward
  without the compiled kernel, and the plain step-by-step oracle (alm_forecaster.testing.oracle)
  at batch 1/8/32/64, plus ``Forecaster.predict`` on CSV payloads (parse + forward + response);
* TorchServe end to end: a private server (alm_ops.launcher's ``start_torchserve``: free
  loopback ports, its own TMPDIR/TEMP/LOG_LOCATION, stopped with nothing left) with the
  shipped config.properties; each model registered through the management API with each
  batchSize (and its maxBatchDelay), then closed-loop load at each concurrency, bounded by
  ``--requests`` and ``--seconds``: p50/p90/p99 latency, throughput, errors, TorchServe's own
  QueueTime (``ts_queue_latency_microseconds`` delta), frontend latency, HandlerTime and
  PredictionTime per batch (the ``[METRICS]`` lines of ts_log.log), the batch sizes formed, CPU
  time per request of the client, the JVM and the workers, and the RSS of the JVM and of each
  worker (psutil);
* worker start: registration (archive unpack + worker start + model ready), scale-up, and a
  profile of the worker's start-up phases;
* a tuning sweep of workers x torch threads x batchSize x maxBatchDelay for the seed model;

and writes the Markdown report (``--out``) and a latency-vs-throughput plot (``--plot``).
Every figure is also stated as a ratio against the plain step-by-step path measured in the
same run. The client runs on the same machine: its CPU time is reported too. The code is the
``bench`` package (bench/suite.py runs it all); the notes that end the report are bench/NOTES.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import ROOT, suite


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "bench_latency_throughput.png")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny model, few requests")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plain-runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--delay-ms", type=int, help="maxBatchDelay for batchSize > 1 (default: default.yaml's)")
    parser.add_argument(
        "--requests", type=int, default=400, help="requests per concurrency level (at least 16 x c; at most 200 at c=1)"
    )
    parser.add_argument("--seconds", type=float, default=20, help="time limit per concurrency level")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds of unmeasured load before each level")
    parser.add_argument("--jvm-warmup", type=float, default=20, help="seconds of load on a fresh JVM before any level")
    parser.add_argument("--no-tune", action="store_true", help="skip the tuning sweep")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="wait up to S seconds for the 1-minute load average to drop below --max-load",
    )
    parser.add_argument("--max-load", type=float, default=0.5)
    parser.add_argument("--keep", action="store_true", help="keep the server's directory (logs)")
    parser.add_argument("--vmargs", help="the JVM's options instead of config.properties' (e.g. to compare JIT modes)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.runs, args.plain_runs = [1, 8], 3, 1
        args.concurrency, args.batch_sizes, args.requests, args.seconds = [1, 4], [1, 4], 20, 10
        args.warmup, args.jvm_warmup = 0.5, 0
        args.no_tune = True

    command = "python scripts/bench_serve.py " + " ".join(argv if argv is not None else sys.argv[1:])
    results = suite.run(args)
    suite.write_outputs(results, args, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
