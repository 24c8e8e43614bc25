"""In-process forward benchmark: the fast forward against the plain step-by-step path.

    python scripts/bench_model.py [--batches 1 8 32 64] [--runs 7] [--threads 2] [--json OUT]

Full seed-size model by default (input 128, hidden 256, 3 layers, 7 blocks, 5 steps, 20-step
windows), random weights. For each batch size it times, in the same run:
  fast     the served forward (compiled kernel when built, else PyTorch)
  bf16     the same with the opt-in bfloat16 products (native build with AVX512-BF16 only),
           and its norm-relative difference from float32
  pytorch  the same restructured forward with the compiled kernel switched off
  plain    the plain step-by-step path (alm_forecaster.testing.oracle: cell by cell, every
           projection inside the time loop), the baseline all ratios are stated against
and prints medians of ``--runs`` runs (after one warm-up), windows/s, and the ratios.
``--compile`` adds torch.compile of the PyTorch forward (minutes of compile time per shape).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from alm_forecaster import native
from alm_forecaster.config import ModelConfig
from bench.inprocess import measure_forward


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
        f"{native.variant() or 'NOT built'}; median of {args.runs} runs (plain: {args.plain_runs})"
    )
    rows = measure_forward(config, args.batches, args.runs, args.plain_runs, args.compile)
    header = f"{'batch':>5} | {'fast ms':>8} {'win/s':>7} | {'pytorch ms':>10} {'win/s':>7} | "
    header += f"{'plain ms':>9} {'win/s':>7} | {'fast/plain speedup':>18}"
    print(header)
    for r in rows:
        print(
            f"{r['batch']:>5} | {r['fast_ms']:>8.2f} {r['fast_wps']:>7.1f} | {r['pytorch_ms']:>10.2f} "
            f"{r['pytorch_wps']:>7.1f} | {r['plain_ms']:>9.1f} {r['plain_wps']:>7.1f} | {r['speedup_vs_plain']:>17.1f}x"
            + (f" | compiled {r['compiled_ms']:.2f} ms (compile {r['compile_s']:.0f} s)" if "compiled_ms" in r else "")
            + (
                f" | bf16 {r['bf16_ms']:.2f} ms {r['bf16_wps']:.1f} win/s (vs fp32 {r['bf16_rel']:.1e})"
                if "bf16_ms" in r
                else ""
            )
        )
    by_batch = {r["batch"]: r for r in rows}
    if 1 in by_batch and 32 in by_batch:
        b1, b32 = by_batch[1], by_batch[32]
        print(
            f"targets ({args.threads} threads): batch-1 median {b1['fast_ms']:.2f} ms (1 thread: <= 10, >= 9x plain; "
            f"here {b1['speedup_vs_plain']:.1f}x plain), batch-32 {b32['fast_wps']:.1f} windows/s (2 threads: >= 230; "
            f"{b32['speedup_vs_plain']:.1f}x plain)"
            + (f", bf16 {b32['bf16_wps']:.1f} windows/s (2 threads: >= 450)" if "bf16_wps" in b32 else "")
        )
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
