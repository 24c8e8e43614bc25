"""The forward on a GPU: batch-1 latency and batch-256 throughput, eager and from a CUDA graph.

    python scripts/bench_gpu.py [--batches 1 32 256] [--runs 50] [--json OUT]

Full seed-size model (random weights). Each row is checked against the CPU forward (relative
error; the GPU tests hold it to 1e-4). Exits 2 when torch has no CUDA device.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from alm_forecaster.config import ModelConfig
from bench.gpu import measure_gpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(f"no CUDA device (torch {torch.__version__}): nothing to measure", file=sys.stderr)
        return 2
    result = measure_gpu(ModelConfig(), args.batches, args.runs, args.device)
    print(f"{result['device']}, torch {result['torch']}, CUDA {result['cuda']}; median of {args.runs} runs")
    print("batch | eager ms   win/s | graph ms   win/s | graph speedup | rel vs CPU | graph vs eager")
    for r in result["rows"]:
        print(
            f"{r['batch']:>5} | {r['eager_ms']:8.2f} {r['eager_wps']:7.0f} | "
            f"{r['graph_ms']:8.2f} {r['graph_wps']:7.0f} | {r['graph_speedup']:12.2f}x | "
            f"{r['rel_vs_cpu']:10.1e} | {r['graph_rel_vs_eager']:.1e}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
