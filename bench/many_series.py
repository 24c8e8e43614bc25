"""Many series per request, and the lone request: the forecaster's speed where its users feel it.

    python bench/many_series.py --measure ROOT     (one checkout: the alm_forecaster on sys.path)
    -> in-process: one JSON ForecastRequest of 1,000 and of 200 series of 300 daily prices
       (Forecaster.predict, medians)
    -> served, on a private TorchServe with the default model's archive built from that code
       (the shipped archive settings): the same two requests; 400 lone two-column CSV requests
       one after the other (p50, p99); 32 closed-loop clients of single-series CSVs (req/s)
    -> with --floor: the same served measurements against a handler that answers a constant
       (bench/constant_handler.py): what TorchServe itself costs on this machine (its floor for
       latency, its ceiling for req/s)

scripts/bench_many.py runs it for this checkout and for an earlier one (--before DIR) in the
same run, one after the other, and writes the "many series" table. This file imports nothing
of bench/ but the load generator (bench/load.py, unchanged since before the issue), so that an
earlier checkout can run it by path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODEL = "alm_quantiles"
ROWS = 300
CLIENTS = 32
#: Lone requests timed (after a warm-up).
LONE = 500


def documents(series: int) -> bytes:
    from alm_forecaster.testing.synthetic import price_series

    inputs = []
    for k in range(series):
        days, closes = price_series(ROWS, seed=k)
        inputs.append(
            {"type": "univariate_time_series", "name": f"s{k}", "series": closes.tolist(), "frequency": "D",
             "start_timestamp": str(days[0]) + "T00:00:00Z"}
        )  # fmt: skip
    return json.dumps({"model": MODEL, "inputs": inputs, "options": {"quantiles": [0.05, 0.5, 0.95]}}).encode()


def median_ms(call, repeats: int) -> float:  # noqa: ANN001 - a function of no arguments
    """The median milliseconds of ``repeats`` calls, after one untimed warm-up call."""
    call()
    timed = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        timed.append((time.perf_counter() - started) * 1e3)
    return statistics.median(timed)


def in_process(root: Path, repeats: int) -> dict:
    """Forecaster.predict on the raw bodies (decoding included, as the served path now does it
    in the core), and the lone CSV's stages."""
    import torch

    from alm_forecaster.forecaster import Forecaster, Request, Timings
    from alm_forecaster.testing.synthetic import price_csv

    torch.set_num_threads(1)
    forecaster = Forecaster.from_checkpoint(root / "models" / f"{MODEL}.pt", MODEL, device="cpu")
    out = {}
    for series in (1000, 200):
        body = documents(series)

        def forecast(body: bytes = body) -> None:
            outcome = forecaster.predict([Request(body, "application/json")])[0]
            assert outcome.status == 200 and outcome.body["status"] == "completed", outcome.body.get("status")

        out[f"json_{series}_ms"] = median_ms(forecast, repeats)
    lone, stages = price_csv(ROWS, seed=1), []
    for _ in range(LONE + 100):
        timings, started = Timings(), time.perf_counter()
        assert forecaster.predict([Request(lone, "text/csv")], timings)[0].status == 200
        total = (time.perf_counter() - started) * 1e3
        stages.append((total, timings.parse_ms, timings.forward_ms, timings.response_ms))
    for name, column in zip(("total", "decode", "forward", "encode"), zip(*stages[100:], strict=True), strict=True):
        out[f"lone_inproc_{name}_ms"] = statistics.median(column)
    return out


def served(root: Path, workdir: Path, repeats: int, floor: bool) -> dict:
    from alm_ops import archive
    from alm_ops.launcher import start_torchserve

    store = workdir / "store"
    store.mkdir(parents=True)
    archive.build(archive.resolve_spec(MODEL, root / "models" / f"{MODEL}.pt"), store)
    with start_torchserve(workdir / "ts", store, [MODEL]) as server:
        out = through(server, MODEL, repeats)
        out |= lone_and_many(server, MODEL)
    if floor:
        out |= {f"floor_{key}": value for key, value in constant_floor(workdir / "constant", repeats).items()}
    return out


def through(server, model: str, repeats: int) -> dict:  # noqa: ANN001 - a TorchServeApi
    """The 1,000- and 200-series JSON requests, one at a time (medians)."""
    out = {}
    for series in (1000, 200):
        body = documents(series)

        def post(body: bytes = body) -> None:
            answer = server.predict(model, data=body, headers={"Content-Type": "application/json"})
            assert answer.status_code == 200, answer.text[:200]

        out[f"served_json_{series}_ms"] = median_ms(post, repeats)
    return out


def lone_and_many(server, model: str) -> dict:  # noqa: ANN001 - a TorchServeApi
    """A lone CSV request after another: from one keep-alive client, and with a new connection
    each (python-requests, as a script would); then 32 closed-loop clients of single-series CSVs."""
    from alm_forecaster.testing.synthetic import price_csv
    from bench.load import run_load

    lone = price_csv(ROWS, seed=1)
    headers = {"Content-Type": "text/csv", **server.auth()}
    path = f"/predictions/{model}"
    run_load(server.inference_url, path, headers, [lone], 1, 100, 30.0, check=b"")  # warm up
    kept = run_load(server.inference_url, path, headers, [lone], 1, LONE, 60.0, check=b"")
    assert kept.errors == 0 and kept.requests == LONE, kept.error_samples
    timed = []
    for _ in range(LONE):
        started = time.perf_counter()
        assert server.predict(model, data=lone, headers={"Content-Type": "text/csv"}).status_code == 200
        timed.append((time.perf_counter() - started) * 1e3)
    bodies = [price_csv(ROWS, seed=k) for k in range(64)]
    many = run_load(server.inference_url, path, headers, bodies, CLIENTS, 4000, 20.0, check=b"")
    return {
        "lone_p50_ms": kept.percentile(50),
        "lone_p99_ms": kept.percentile(99),
        "lone_new_connection_p50_ms": float(np.percentile(timed, 50)),
        "lone_new_connection_p99_ms": float(np.percentile(timed, 99)),
        "c32_req_per_s": many.throughput,
        "c32_errors": many.errors,
    }


def constant_floor(workdir: Path, repeats: int) -> dict:
    """The same measurements against a handler that answers a constant (same archive settings):
    what TorchServe itself costs on this machine."""
    from alm_ops import archive
    from alm_ops.launcher import start_torchserve

    store = workdir / "store"
    store.mkdir(parents=True)
    config = workdir / "constant.yaml"
    shutil.copy(archive.DEFAULT_CONFIG, config)
    command = [
        sys.executable, "-m", "model_archiver.model_packaging", "--model-name", "constant", "--version", "1.0",
        "--handler", str(Path(__file__).with_name("constant_handler.py")), "--config-file", str(config),
        "--export-path", str(store),
    ]  # fmt: skip
    env = {**os.environ, "TMPDIR": str(workdir), "TEMP": str(workdir)}
    subprocess.run(command, check=True, env=env, capture_output=True)
    with start_torchserve(workdir / "ts", store, ["constant"]) as server:
        return through(server, "constant", repeats) | lone_and_many(server, "constant")


def measure(root: Path, repeats: int, floor: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return {
            "root": str(root),
            "load_average_1min": os.getloadavg()[0],
            **in_process(root, repeats),
            **served(root, Path(tmp), repeats, floor),
        }


def run_checkout(root: Path, repeats: int, floor: bool) -> dict:
    """``measure`` in a fresh Python with ``root``'s code on its path (this file run by path)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", str(root), "--repeats", str(repeats)]
    done = subprocess.run([*command, *(["--floor"] if floor else [])], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the measurement of {root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def medians(runs: list[dict]) -> dict:
    """Each figure's median over the runs of one checkout (its root and load as lists)."""
    out = {key: statistics.median(run[key] for run in runs) for key, value in runs[0].items() if key != "root"}
    return {**out, "root": runs[0]["root"], "loads": [run["load_average_1min"] for run in runs]}


#: (figure, label, target) of the table, the issue's targets.
ROWS_OF_TABLE = [
    ("json_1000_ms", "1,000 series x 300 days, one JSON request, in-process (ms)", "<= 60"),
    ("served_json_1000_ms", "the same, served (ms)", "<= 100"),
    ("json_200_ms", "200 series, in-process (ms)", ""),
    ("served_json_200_ms", "200 series, served (ms)", "<= 25"),
    ("lone_p50_ms", "a lone two-column CSV, served, one keep-alive client, p50 (ms)", "<= 5"),
    ("lone_p99_ms", "the same, p99 (ms)", "<= 10"),
    ("lone_new_connection_p50_ms", "a lone CSV, a new connection each (python-requests), p50 (ms)", ""),
    ("lone_new_connection_p99_ms", "the same, p99 (ms)", ""),
    ("c32_req_per_s", "32 clients of single-series CSVs, served (req/s)", "stated"),
]
STAGES = ("decode", "forward", "encode", "total")


def markdown(before: dict, after: dict, command: str) -> str:
    lines = [
        "## Many series per request, and the lone request",
        "",
        f"`{command}`: the earlier checkout ({before['root']}) and this one, alternately in the same run "
        f"({len(before['loads'])} rounds; figures are the medians of the rounds), each in its own Python with its own "
        f"code on the path (1-minute load average when each started: before {_loads(before)}, after "
        f"{_loads(after)}; the benchmark itself is most of it); the default model (the same network size in "
        "both), the shipped archive settings, 1 torch thread in-process, in-process requests given as raw bytes "
        '(decoding included); medians of the big requests. "TorchServe alone": the same served measurements '
        "against a handler that answers a constant (bench/constant_handler.py), its floor for latency and its "
        "ceiling for req/s.",
        "",
        "| figure | before | after | after / before | TorchServe alone | target |",
        "|---|---|---|---|---|---|",
    ]
    for key, label, target in ROWS_OF_TABLE:
        ratio = after[key] / before[key] if before[key] else float("nan")
        floor = after.get(f"floor_{key}")
        shown = "" if floor is None else f"{floor:.1f}"
        lines.append(f"| {label} | {before[key]:.1f} | {after[key]:.1f} | {ratio:.2f} | {shown} | {target} |")
    lines += [
        "",
        "The lone CSV in-process (Forecaster.predict, medians, ms): "
        + "; ".join(
            f"{stage} {before[f'lone_inproc_{stage}_ms']:.2f} -> {after[f'lone_inproc_{stage}_ms']:.2f}"
            for stage in STAGES
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def _loads(side: dict) -> str:
    return " ".join(f"{load:.1f}" for load in side["loads"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", type=Path, required=True, help="the checkout whose code is on sys.path")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--floor", action="store_true", help="also measure TorchServe with a constant handler")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.measure, args.repeats, args.floor)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
