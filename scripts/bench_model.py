"""In-process forward benchmark: the fast forward against the plain step-by-step path.

    python scripts/bench_model.py [--batches 1 8 32 64] [--runs 7] [--threads 2] [--json OUT]

Full seed-size model by default (input 128, hidden 256, 3 layers, 7 blocks, 5 steps, 20-step
windows), random weights. For each batch size it times, in the same run:
  fast     the served forward (compiled kernel when built, else PyTorch)
  pytorch  the same restructured forward with the compiled kernel switched off
  plain    the plain step-by-step path (tests/oracle.py: cell by cell, every projection
           inside the time loop), the baseline all ratios are stated against
and prints medians of ``--runs`` runs (after one warm-up), windows/s, and the ratios.
``--compile`` adds torch.compile of the PyTorch forward (minutes of compile time per shape).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alm_forecaster import native  # noqa: E402
from alm_forecaster.config import ModelConfig  # noqa: E402
from alm_forecaster.model import XLSTMForecaster  # noqa: E402
from alm_forecaster.testing.oracle import oracle_forward  # noqa: E402


@contextmanager
def native_disabled():
    previous = os.environ.get("ALM_FORECASTER_NATIVE")
    os.environ["ALM_FORECASTER_NATIVE"] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["ALM_FORECASTER_NATIVE"]
        else:
            os.environ["ALM_FORECASTER_NATIVE"] = previous


def median_ms(fn, runs: int) -> float:
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def measure(config: ModelConfig, batches: list[int], runs: int, plain_runs: int, compile_: bool) -> list[dict]:
    torch.manual_seed(0)
    model = XLSTMForecaster(config).eval()
    state = model.state_dict()
    compiled = torch.compile(model) if compile_ else None
    rows = []
    for batch in batches:
        x = torch.randn(batch, config.seq_len, config.input_size)
        row = {"batch": batch, "fast_ms": median_ms(lambda x=x: model(x), runs)}
        with native_disabled():
            row["pytorch_ms"] = median_ms(lambda x=x: model(x), runs)
            if compiled is not None:
                start = time.perf_counter()
                with torch.inference_mode():
                    compiled(x)
                row["compile_s"] = time.perf_counter() - start
                row["compiled_ms"] = median_ms(lambda x=x: compiled(x), runs)
        row["plain_ms"] = median_ms(
            lambda x=x: oracle_forward(state, config.num_blocks, config.num_layers, x), plain_runs
        )
        for key in [k for k in row if k.endswith("_ms")]:
            row[key.replace("_ms", "_wps")] = batch / row[key] * 1e3
        row["speedup_vs_plain"] = row["plain_ms"] / row["fast_ms"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--plain-runs", type=int, default=5, help="runs of the (slow) plain path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = ModelConfig(hidden_size=args.hidden_size)
    print(
        f"model: input {config.input_size}, hidden {config.hidden_size}, {config.num_layers} layers, "
        f"{config.num_blocks} blocks ({config.block_pattern}), {config.output_size} steps, seq_len {config.seq_len}; "
        f"torch {torch.__version__}, {args.threads} threads, native kernel "
        f"{'loaded' if native.is_loaded() else 'NOT built'}; median of {args.runs} runs (plain: {args.plain_runs})"
    )
    rows = measure(config, args.batches, args.runs, args.plain_runs, args.compile)
    header = f"{'batch':>5} | {'fast ms':>8} {'win/s':>7} | {'pytorch ms':>10} {'win/s':>7} | "
    header += f"{'plain ms':>9} {'win/s':>7} | {'fast/plain speedup':>18}"
    print(header)
    for r in rows:
        print(
            f"{r['batch']:>5} | {r['fast_ms']:>8.2f} {r['fast_wps']:>7.1f} | {r['pytorch_ms']:>10.2f} "
            f"{r['pytorch_wps']:>7.1f} | {r['plain_ms']:>9.1f} {r['plain_wps']:>7.1f} | {r['speedup_vs_plain']:>17.1f}x"
            + (f" | compiled {r['compiled_ms']:.2f} ms (compile {r['compile_s']:.0f} s)" if "compiled_ms" in r else "")
        )
    by_batch = {r["batch"]: r for r in rows}
    if 1 in by_batch and 32 in by_batch:
        b1, b32 = by_batch[1], by_batch[32]
        print(
            f"targets: batch-1 median {b1['fast_ms']:.2f} ms (<= 15; {b1['speedup_vs_plain']:.1f}x plain), "
            f"batch-32 {b32['fast_wps']:.1f} windows/s (>= 100; {b32['speedup_vs_plain']:.1f}x plain)"
        )
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
