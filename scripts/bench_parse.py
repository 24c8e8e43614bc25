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

Then the README's raw OHLCV example (examples/sp500_tail.csv) parsed for sp500_xlstm: the CSV
and the feature pipeline (71 features, standardised, PCA) that turns it into the model's window.
"""

from __future__ import annotations

import argparse

from bench.inprocess import PARSE_LIMIT_MS, measure_ohlcv_parse, measure_parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args(argv)
    result = measure_parse(args.rows, args.input_size, args.runs)
    print(
        f"parse + validate of a {result['rows']}-row, {result['columns']}-column CSV ({result['bytes']} bytes), "
        f"{result['runs']} runs:"
    )
    for name, r in result["paths"].items():
        print(f"  {name:<40} p50 {r['p50_ms']:.3f} ms   p99 {r['p99_ms']:.3f} ms")
    project = next(iter(result["paths"].values()))["p50_ms"]
    verdict = "within" if project <= PARSE_LIMIT_MS else "OVER"
    print(f"project path p50 {project:.3f} ms: {verdict} the {PARSE_LIMIT_MS} ms budget")
    ohlcv = measure_ohlcv_parse(max(50, args.runs // 10))
    print(
        f"OHLCV example {ohlcv['file']} ({ohlcv['rows']} rows -> window {ohlcv['window']}), Forecaster.parse, "
        f"{ohlcv['runs']} runs: p50 {ohlcv['p50_ms']:.3f} ms   p99 {ohlcv['p99_ms']:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
