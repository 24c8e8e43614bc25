"""Write an UNTRAINED checkpoint in the platform's seed format, deterministically.

Random weights, so its forecasts mean nothing: it exists to exercise loading, serving and
benchmarks at the platform's full size (input 128, hidden 256, 3 layers, 7 blocks), and it
says so in its config (``"untrained": true``).

    python scripts/make_seed_checkpoint.py models/seed_untrained.pt [--seed 0] [--hidden-size 256] ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alm_forecaster.config import ModelConfig
from alm_forecaster.testing.synthetic import write_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--num-layers", type=int, default=3)
    parser.add_argument("--num-blocks", type=int, default=7)
    parser.add_argument("--horizon", type=int, default=5)
    parser.add_argument("--declared-output-size", type=int, default=None)
    args = parser.parse_args(argv)
    config = ModelConfig(
        input_size=args.input_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_blocks=args.num_blocks,
        output_size=args.horizon,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(args.output, config, args.seed, declared_output_size=args.declared_output_size)
    print(f"wrote UNTRAINED seed-format checkpoint {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
