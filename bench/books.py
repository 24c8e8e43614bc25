"""What a book costs: joint scenarios in-process and through TorchServe, and the worker's memory.

    books (N synthetic daily price series of ROWS days with volatility clustering, exposures of
    alternating sign; the speed of the engine does not depend on what the series are)
    -> in-process: Forecaster.predict of the JSON book, median of repeats
    -> served: the default model's archive on a private TorchServe (the shipped archive settings),
       the same book POSTed, median of repeats; the worker's peak resident memory (VmHWM of
       /proc/<pid>/status) above its resident memory before the first book
    -> beside it, measured in the same run: a one-series JSON forecast, served (the baseline)

The issue's targets: a 20-series book, 10,000 paths, 10 steps, VaR/ES: <= 150 ms served; a
50-series book, 10,000 paths, 250 steps: <= 3 s served, the worker's peak memory <= +500 MB.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from alm_forecaster.forecaster import Forecaster, Request, configure_threads
from alm_forecaster.testing.synthetic import price_series
from alm_ops import archive
from alm_ops.launcher import TorchServe, start_torchserve

from . import ROOT

#: Its section of BENCHMARKS.md (between <!-- books: begin/end -->).
SECTION = "books"
MODEL = "alm_quantiles"
CHECKPOINT = ROOT / "models" / f"{MODEL}.pt"
ROWS = 500
#: (series, paths, steps, target ms served): the issue's two books.
BOOKS = ((20, 10_000, 10, 150), (50, 10_000, 250, 3000))
MEMORY_TARGET_MB = 500


def book(series: int, paths: int, steps: int) -> dict:
    """A JSON book of ``series`` synthetic prices on the same days."""
    inputs, exposures = [], {}
    for k in range(series):
        days, closes = price_series(ROWS, seed=1000 + k)
        name = f"s{k}"
        inputs.append(
            {"type": "univariate_time_series", "name": name, "series": closes.tolist(), "frequency": "D",
             "start_timestamp": str(days[0]) + "T00:00:00Z"}
        )  # fmt: skip
        exposures[name] = 1e6 if k % 2 == 0 else -4e5
    scenarios = {"paths": paths, "seed": 7, "exposures": exposures, "risk_levels": [0.95, 0.99]}
    return {"model": MODEL, "inputs": inputs, "options": {"horizon": steps, "scenarios": scenarios}}


def in_process(repeats: int) -> list[dict]:
    configure_threads(1)  # as a served worker (archive_configs/default.yaml: threads 1)
    forecaster = Forecaster.from_checkpoint(CHECKPOINT, MODEL, device="cpu")
    out = []
    for series, paths, steps, _ in BOOKS:
        document = book(series, paths, steps)
        timed = []
        for _ in range(repeats + 1):  # the first is a warm-up
            started = time.perf_counter()
            outcome = forecaster.predict([Request(document, "application/json")])[0]
            timed.append((time.perf_counter() - started) * 1e3)
            assert outcome.ok, outcome.body
        out.append({"series": series, "paths": paths, "steps": steps, "ms": statistics.median(timed[1:])})
    return out


def served(workdir: Path, repeats: int) -> dict:
    store = workdir / "store"
    store.mkdir(parents=True)
    archive.build(archive.resolve_spec(MODEL, CHECKPOINT), store)
    one = book(1, 1, 1)
    one["options"] = {"quantiles": [0.05, 0.5, 0.95]}
    with start_torchserve(workdir / "ts", store, [MODEL]) as server:
        workers = [psutil.Process(w["pid"]) for w in server.workers(MODEL)]
        _post(server, json.dumps(one).encode())
        rss_before = {p.pid: p.memory_info().rss for p in workers}
        baseline = statistics.median(_post(server, json.dumps(one).encode()) for _ in range(repeats * 4))
        books = []
        for series, paths, steps, target in BOOKS:
            body = json.dumps(book(series, paths, steps)).encode()
            _post(server, body)  # a warm-up: each worker's first book
            timed = [_post(server, body) for _ in range(repeats)]
            books.append({"series": series, "paths": paths, "steps": steps, "ms": statistics.median(timed),
                          "target_ms": target})  # fmt: skip
        peak = max(_peak_rss(p.pid) - rss_before[p.pid] for p in workers)
    return {"baseline_ms": baseline, "books": books, "worker_peak_mb": peak / 2**20}


def _post(server: TorchServe, body: bytes) -> float:
    started = time.perf_counter()
    response = server.predict(MODEL, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text[:300]
    return (time.perf_counter() - started) * 1e3


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def run(repeats: int) -> dict:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        return {"load_average_1min": load, "in_process": in_process(repeats), "served": served(Path(tmp), repeats)}


def markdown(results: dict, command: str) -> str:
    srv = results["served"]
    lines = [
        "## Books: joint scenarios, served",
        "",
        f"`{command}` (the default model's archive with the shipped settings on a private TorchServe; "
        f"books of synthetic daily prices, {ROWS} days each; medians; load average "
        f"{results['load_average_1min']:.1f} when it started). Baseline in the same run: a one-series JSON "
        f"forecast served in {srv['baseline_ms']:.1f} ms.",
        "",
        "| series | paths | steps | in-process (ms) | served (ms) | x baseline | target served | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for local, remote in zip(results["in_process"], srv["books"], strict=True):
        met = "yes" if remote["ms"] <= remote["target_ms"] else "**no**"
        lines.append(
            f"| {remote['series']} | {remote['paths']:,} | {remote['steps']} | {local['ms']:.0f} | {remote['ms']:.0f} "
            f"| {remote['ms'] / srv['baseline_ms']:.0f} | <= {remote['target_ms']:,} ms | {met} |"
        )
    memory_met = "met" if srv["worker_peak_mb"] <= MEMORY_TARGET_MB else "**missed**"
    lines += [
        "",
        f"The worker's peak resident memory rose by {srv['worker_peak_mb']:.0f} MB over these books (target: at most "
        f"+{MEMORY_TARGET_MB} MB: {memory_met}); paths are summarised step by step, never held.",
        "",
    ]
    return "\n".join(lines)
