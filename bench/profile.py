"""Where a worker's time goes: py-spy on a worker serving lone requests, and the phases of a
worker's start-up timed in a fresh Python (`bench.worker_start`)."""

from __future__ import annotations

import itertools
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import ROOT
from .cells import CellConfig
from .load import LoadResult, run_load
from .server import Server

#: py-spy frame fragments -> what a lone request's worker time is spent on (first match wins).
PROFILE_STAGES = (
    ("forward", ("Pipeline.forward ",)),
    ("parse + validate", ("Forecaster.decode ",)),
    ("response JSON", ("csv_protocol.py", "kserve.py", "XLSTMHandler.respond ")),
    ("handler metrics", ("XLSTMHandler.record ", "XLSTMHandler.emit ")),
    ("handler, other", ("xlstm_handler.py",)),
    ("TorchServe: read the request", ("retrieve_msg ",)),
    ("TorchServe: predict bookkeeping", ("ts/service.py",)),
)

#: The marks `bench.worker_start` prints, in the order the worker passes them.
START_PHASES = [
    "interpreter",
    "import_torch",
    "import_ts_worker",
    "import_handler",
    "read_file",
    "sha256",
    "torch_load",
    "finite_check",
    "build_model",
    "load_state_dict",
]


def profile_lone_requests(
    server: Server, archive: str, name: str, cell: CellConfig, bodies: list[bytes], seconds: float, workdir: Path
) -> dict | None:
    """Sample one worker with py-spy (wall clock, idle included) while lone requests run: where the
    worker's time goes per request, and how long it waits between requests (the front end, the
    HTTP round trip and the client). None when py-spy is missing or may not attach."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        print("  py-spy not installed (requirements-dev.txt): no worker profile", flush=True)
        return None
    server.register(archive, name, cell.batch_size, cell.delay_ms, 1)
    try:
        url, headers, path = server.client.inference_url, server.inference_headers(), f"/predictions/{name}"
        run_load(url, path, headers, bodies, 1, 20_000, 3.0)
        raw = workdir / "worker-profile.txt"
        command = [
            spy,
            "record",
            "-p",
            str(server.workers(name)[0].pid),
            "--idle",
            "--nonblocking",
            "--rate",
            "1000",
            "--format",
            "raw",
            "-o",
            str(raw),
            "--duration",
            str(int(seconds)),
        ]
        # The load runs longer than the sampling on both sides, so that every sample falls inside it.
        done: list[LoadResult] = []
        load = threading.Thread(
            target=lambda: done.append(run_load(url, path, headers, bodies, 1, 1_000_000, seconds + 3.0))
        )
        load.start()
        time.sleep(1.0)
        spying = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, err = spying.communicate(timeout=seconds + 60)
        load.join()
        result = done[0]
        if spying.returncode != 0 or not raw.exists():
            print(f"  py-spy failed: {err.strip()[-300:]}", flush=True)
            return None
        return summarise_profile(raw.read_text(), result.requests, result.seconds)
    finally:
        server.unregister(name)


def summarise_profile(raw: str, requests_done: int, seconds: float) -> dict:
    """py-spy raw stacks -> ms per request by stage (`PROFILE_STAGES`), the rest as waiting or other:
    each stage's share of the samples times the mean time per request of the load around them."""
    samples: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = stack.split(";")
        stage = next((label for label, marks in PROFILE_STAGES if any(m in f for f in frames for m in marks)), None)
        if stage is None:
            innermost = frames[-1]
            if "handle_connection" in innermost and "model_service_worker.py" in innermost:
                stage = "TorchServe: send the response"
            else:
                stage = "other"
        elif stage == "TorchServe: read the request" and "_retrieve_buffer" in frames[-1]:
            stage = "waiting for the next request (front end, HTTP, client)"
        samples[stage] = samples.get(stage, 0) + int(count)
    per_request = seconds / requests_done * 1e3 if requests_done else float("nan")
    return {
        "requests": requests_done,
        "seconds": seconds,
        "samples": total,
        "ms_per_request": {k: v / total * per_request for k, v in sorted(samples.items(), key=lambda kv: -kv[1])},
        "wall_ms_per_request": per_request,
    }


def profile_worker_start(checkpoint: Path, runs: int = 3) -> dict:
    """Time a fresh Python doing what a TorchServe worker does before it is READY (median of ``runs``)."""
    samples = []
    for _ in range(runs):
        spawn = time.time()
        done = subprocess.run(
            [sys.executable, "-m", "bench.worker_start", str(checkpoint)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        if done.returncode != 0:
            return {"error": done.stderr[-2000:]}
        marks = json.loads(done.stdout.strip().splitlines()[-1])
        whole = marks.pop("_load_checkpoint_s")
        row = {"python_start_s": marks["interpreter"] - spawn}
        for a, b in itertools.pairwise(START_PHASES):
            row[b + "_s"] = marks[b] - marks[a]
        row["all of it again: load_checkpoint + Forecaster_s"] = whole
        samples.append(row)
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}
