"""Parse + validate one request CSV: pandas vs numpy vs the project's csv/str path.

    python scripts/bench_parse.py [--rows 20] [--input-size 128] [--runs 2000]

Times, on the same 20-row, 129-column CSV (``emb_0..emb_127``, ``last_price``), the whole
request-to-window step with the same validation (required columns, enough rows, every used
value a finite number, ``last_price`` > 0, float32 window), and checks that the windows agree:

  project  ``Forecaster.parse`` (alm_forecaster.table + contract: str.split, float per cell)
           what the handler runs for every request;
  pandas   ``pandas.read_csv`` then the same checks (benchmark only: pandas is never imported
           by the served code);
  numpy    ``numpy.loadtxt`` of the numeric block, then the same checks.

Medians and 99th percentiles in ms. The project path must stay <= 1 ms.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alm_forecaster.checkpoint import build_checkpoint  # noqa: E402
from alm_forecaster.config import ModelConfig  # noqa: E402
from alm_forecaster.contract import PRICE_COLUMN, Window, embedding_columns  # noqa: E402
from alm_forecaster.errors import InputError  # noqa: E402
from alm_forecaster.forecaster import Forecaster  # noqa: E402
from alm_forecaster.table import decode  # noqa: E402
from alm_forecaster.testing.synthetic import embeddings_csv, seed_checkpoint  # noqa: E402

#: The contract limit for one request's parse + validate.
LIMIT_MS = 1.0


def _finish(values: np.ndarray, columns: list[str], seq_len: int) -> Window:
    """The contract's checks on the (rows, columns) float64 block of the window, as contract.py does."""
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise InputError(f"Row {row + 1}, column '{columns[col]}': not a finite number.", reason="bad_value")
    prices = values[:, -1]
    if (prices <= 0).any():
        raise InputError(f"Column '{PRICE_COLUMN}': price must be positive.", reason="non_positive_price")
    embeddings = values[:, :-1].astype(np.float32)
    if not np.isfinite(embeddings).all():
        raise InputError("A value overflows float32.", reason="bad_value")
    return Window(embeddings=embeddings, current_price=float(prices[-1]))


def pandas_window(payload: bytes, input_size: int, seq_len: int) -> Window:
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(payload))
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"Malformed CSV: {exc}", status=400, reason="malformed_csv") from None
    columns = embedding_columns(input_size) + [PRICE_COLUMN]
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise InputError(f"Missing required columns: {', '.join(missing)}.", reason="missing_columns")
    if len(frame) < seq_len:
        raise InputError(f"Not enough data points. Need at least {seq_len}, got {len(frame)}", reason="too_few_rows")
    try:
        values = frame[columns].iloc[-seq_len:].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError("A value is not a number.", reason="bad_value") from None
    return _finish(values, columns, seq_len)


def numpy_window(payload: bytes, input_size: int, seq_len: int) -> Window:
    text = decode(payload)
    header_end = text.index("\n")
    header = [name.strip() for name in text[:header_end].split(",")]
    columns = embedding_columns(input_size) + [PRICE_COLUMN]
    index = {name: i for i, name in enumerate(header)}
    missing = [name for name in columns if name not in index]
    if missing:
        raise InputError(f"Missing required columns: {', '.join(missing)}.", reason="missing_columns")
    try:
        block = np.loadtxt(io.StringIO(text[header_end + 1 :]), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        raise InputError("A value is not a number.", reason="bad_value") from None
    if len(block) < seq_len:
        raise InputError(f"Not enough data points. Need at least {seq_len}, got {len(block)}", reason="too_few_rows")
    return _finish(block[-seq_len:, [index[name] for name in columns]], columns, seq_len)


def forecaster(input_size: int) -> Forecaster:
    """A Forecaster with the given input size (a small random network: only parsing is timed)."""
    config = ModelConfig(input_size=input_size, hidden_size=16, num_layers=1, num_blocks=1)
    loaded = build_checkpoint(seed_checkpoint(config, seed=0), Path("bench_parse"))
    return Forecaster(loaded, "bench_parse")


def time_ms(fn, runs: int) -> dict:
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": statistics.median(samples), "p99_ms": float(np.percentile(samples, 99))}


def measure(rows: int = 20, input_size: int = 128, runs: int = 2000) -> dict:
    payload = embeddings_csv(rows=rows, input_size=input_size, seed=0)
    seq_len = rows
    fc = forecaster(input_size)
    paths = {
        "project (csv/str, Forecaster.parse)": lambda: fc.parse(payload),
        "pandas.read_csv + same checks": lambda: pandas_window(payload, input_size, seq_len),
        "numpy.loadtxt + same checks": lambda: numpy_window(payload, input_size, seq_len),
    }
    reference = fc.parse(payload)
    for name, fn in paths.items():
        window = fn()
        if not (
            np.array_equal(window.embeddings, reference.embeddings) and window.current_price == reference.current_price
        ):
            raise AssertionError(f"{name}: a different window than the project's path")
    results = {name: time_ms(fn, runs) for name, fn in paths.items()}
    return {
        "rows": rows,
        "columns": input_size + 1,
        "bytes": len(payload),
        "runs": runs,
        "paths": results,
        "limit_ms": LIMIT_MS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args(argv)
    result = measure(args.rows, args.input_size, args.runs)
    print(
        f"parse + validate of a {result['rows']}-row, {result['columns']}-column CSV ({result['bytes']} bytes), "
        f"{result['runs']} runs:"
    )
    for name, r in result["paths"].items():
        print(f"  {name:<40} p50 {r['p50_ms']:.3f} ms   p99 {r['p99_ms']:.3f} ms")
    project = next(iter(result["paths"].values()))["p50_ms"]
    print(f"project path p50 {project:.3f} ms: {'within' if project <= LIMIT_MS else 'OVER'} the {LIMIT_MS} ms budget")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
