"""Load benchmark: in-process forward vs TorchServe end to end vs the plain step-by-step path.

    python scripts/bench_serve.py --out BENCHMARKS.md          # the full run (~10 min, 2 cores)
    python scripts/bench_serve.py --quick --out /tmp/bench.md  # smoke run, tiny model (~40 s)

One run measures, for the full seed-size model (``models/seed_untrained.pt``, random weights,
made by scripts/make_seed_checkpoint.py when missing) and the default model
(``models/sp500_xlstm.pt``):

* in process (scripts/bench_model.py's functions): the fast forward, the same forward without
  the compiled kernel, and the plain step-by-step oracle (tests/oracle.py) at batch 1/8/32/64,
  plus ``Forecaster.predict`` on CSV payloads (parse + forward + response);
* TorchServe end to end: a private server (tests/conftest.py's ``start_torchserve``: free
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
same run. The client runs on the same machine: its CPU time is reported too.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import psutil
import requests
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alm_forecaster import native  # noqa: E402
from alm_forecaster.checkpoint import load_checkpoint  # noqa: E402
from alm_forecaster.config import ModelConfig  # noqa: E402
from alm_forecaster.forecaster import Forecaster  # noqa: E402
from alm_forecaster.testing.synthetic import TINY, embeddings_csv, write_checkpoint  # noqa: E402
from scripts import bench_model, bench_parse, build_archive  # noqa: E402
from tests.conftest import TorchServeClient, start_torchserve  # noqa: E402

SEED_CHECKPOINT = ROOT / "models" / "seed_untrained.pt"
DEFAULT_MODEL = "sp500_xlstm"
#: TorchServe log timestamps: 2026-11-29T01:23:12,054
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d),(\d{3}) ")
_METRIC = re.compile(r"\[METRICS\](\w+)\.\w+:([-\d.eE+]+)\|#([^|]*)\|")


# --------------------------------------------------------------------------- the machine


def machine() -> dict:
    lscpu = _run(["lscpu"])
    fields = dict((k.strip(), v.strip()) for k, v in (line.split(":", 1) for line in lscpu.splitlines() if ":" in line))
    flags = fields.get("Flags", "").split()
    return {
        "cpu": fields.get("Model name", platform.processor()),
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu_flags": " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags),
        "l2": fields.get("L2 cache", ""),
        "l3": fields.get("L3 cache", ""),
        "hypervisor": fields.get("Hypervisor vendor", ""),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchserve": _version("torchserve"),
        "torch_model_archiver": _version("torch-model-archiver"),
        "java": (_run(["java", "-version"], stderr=True).splitlines() or ["?"])[0],
        "native_kernel": native.is_loaded(),
        "free_m": _run(["free", "-m"]).strip(),
    }


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _run(command: list[str], stderr: bool = False) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stderr if stderr else done.stdout


class CpuMeter:
    """CPU seconds used by the whole machine and by the given processes over a phase, so the
    report can say how much of the machine someone else was using meanwhile."""

    def __init__(self) -> None:
        self.start_busy = _busy()
        self.start_wall = time.monotonic()

    def foreign_cores(self, ours_cpu_s: float) -> float:
        wall = time.monotonic() - self.start_wall
        return max(0.0, (_busy() - self.start_busy - ours_cpu_s) / wall) if wall > 0 else 0.0


def _busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0) + getattr(t, "steal", 0)


def _proc_cpu(process: psutil.Process) -> float:
    try:
        t = process.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def wait_quiet(max_load: float, max_wait_s: float) -> float:
    """Wait (up to ``max_wait_s``) until the 1-minute load average is below ``max_load`` and
    other processes use less than 0.1 cores over 10 s (the load average lags)."""
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        load = os.getloadavg()[0]
        if load < max_load:
            meter, cpu0 = CpuMeter(), time.process_time()
            time.sleep(10)
            busy = meter.foreign_cores(time.process_time() - cpu0)
            if busy < 0.1:
                break
            print(f"waiting for a quiet machine: other processes use {busy:.2f} cores", flush=True)
        else:
            print(f"waiting for a quiet machine: load {load:.2f} >= {max_load}", flush=True)
        time.sleep(20)
    return os.getloadavg()[0]


# --------------------------------------------------------------------------- in process


@dataclass
class BenchModel:
    """A model to benchmark: its name, checkpoint and config."""

    name: str
    checkpoint: Path
    config: ModelConfig
    label: str


def in_process(model: BenchModel, batches: list[int], runs: int, plain_runs: int, payloads: list[bytes]) -> dict:
    """Fast / pure-PyTorch / plain forward at 2 threads (bench_model.measure), the fast forward at
    1 thread, and Forecaster.predict (parse + forward + response) at 1 and 2 threads."""
    out: dict = {"threads": {}}
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out["rows"] = bench_model.measure(model.config, batches, runs, plain_runs, compile_=False)
        torch.manual_seed(0)
        from alm_forecaster.model import XLSTMForecaster

        net = XLSTMForecaster(model.config).eval()
        forecaster = Forecaster(load_checkpoint(model.checkpoint), model.name, device=torch.device("cpu"))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            per = {}
            for batch in batches:
                x = torch.randn(batch, model.config.seq_len, model.config.input_size)
                per[batch] = {"fast_ms": bench_model.median_ms(lambda x=x: net(x), runs)}
                chunk = (payloads * (batch // len(payloads) + 1))[:batch]
                per[batch]["predict_ms"] = bench_model.median_ms(lambda c=chunk: forecaster.predict(c), runs)
            out["threads"][threads] = per
        one = payloads[0]
        out["parse_ms"] = bench_model.median_ms(lambda: forecaster.parse(one), max(runs, 50))
    finally:
        torch.set_num_threads(previous)
    return out


# --------------------------------------------------------------------------- load client


@dataclass
class LoadResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def run_load(
    url: str,
    path: str,
    headers: dict[str, str],
    bodies: list[bytes],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    check: bytes = b'"predicted_prices"',
    before_each=None,
) -> LoadResult:
    """Closed loop: ``concurrency`` keep-alive connections, each sending its next request as soon
    as the previous answer is in, until ``max_requests`` are sent or ``max_seconds`` pass.
    A request counts as an error unless it is a 200 whose body contains ``check``."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    counter = itertools.count()
    deadline = time.monotonic() + max_seconds
    result = LoadResult(concurrency)
    lock = threading.Lock()
    spans: list[tuple[float, float]] = []

    def worker(offset: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        local, errors = [], []
        try:
            while True:
                n = next(counter)
                if n >= max_requests or time.monotonic() > deadline:
                    break
                body = bodies[(n + offset) % len(bodies)]
                if before_each is not None:
                    before_each()
                start = time.perf_counter()
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    ok = response.status == 200 and check in data
                    if not ok:
                        errors.append(f"{response.status} {data[:200]!r}")
                except (OSError, http.client.HTTPException) as exc:
                    ok = False
                    errors.append(f"{type(exc).__name__}: {exc}")
                    conn.close()
                    conn = http.client.HTTPConnection(host, int(port), timeout=120)
                end = time.perf_counter()
                local.append((start, end, ok))
        finally:
            conn.close()
            with lock:
                for start, end, ok in local:
                    spans.append((start, end))
                    if ok:
                        result.latencies_ms.append((end - start) * 1e3)
                result.errors += len(errors)
                result.error_samples.extend(errors[: 3 - len(result.error_samples)])

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if spans:
        result.seconds = max(e for _, e in spans) - min(s for s, _ in spans)
    result.requests = len(result.latencies_ms)
    return result


# --------------------------------------------------------------------------- the server


def parse_prometheus(text: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if match:
            out[(match.group(1), match.group(2))] = float(match.group(3))
    return out


def metric_sum(metrics: dict, name: str, **labels: str) -> float:
    return sum(
        v for (n, lab), v in metrics.items() if n == name and all(f'{k}="{w}"' in lab for k, w in labels.items())
    )


def log_time(line: str) -> float | None:
    match = _TS.match(line)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").timestamp() + int(match.group(2)) / 1e3


class Server:
    """A private TorchServe (tests/conftest.py's start_torchserve) and what the benchmark does with it."""

    def __init__(self, client: TorchServeClient) -> None:
        self.client = client
        #: The front end's log (worker start, [METRICS] lines) and the workers' own (log4j2.xml)
        self.logs = (client.log_dir / "ts_log.log", client.log_dir / "model_log.log")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # start_torchserve returns once the keys exist
            with contextlib.suppress(requests.ConnectionError):
                if client.manage("GET", "/models").ok:
                    break
            time.sleep(0.05)
        self.jvm = next((p for p in client.processes() if "java" in p.name()), None)

    def log_offset(self) -> tuple[int, ...]:
        return tuple(log.stat().st_size if log.exists() else 0 for log in self.logs)

    def log_since(self, offset: tuple[int, ...]) -> list[str]:
        """Lines written to the logs since `log_offset` (asynchronous logging: give them a moment)."""
        time.sleep(0.2)
        lines = []
        for log, start in zip(self.logs, offset, strict=True):
            if log.exists():
                with open(log, "rb") as f:
                    f.seek(start)
                    lines += f.read().decode("utf-8", "replace").splitlines()
        return lines

    def register(self, archive: str, name: str, batch_size: int, delay_ms: int, workers: int) -> dict:
        offset = self.log_offset()
        params = {
            "url": archive,
            "batch_size": batch_size,
            "max_batch_delay": delay_ms,
            "initial_workers": workers,
            "synchronous": "true",
        }
        posted = time.time()
        start = time.monotonic()
        response = self.client.manage("POST", "/models", params=params)
        if response.status_code != 200:
            raise RuntimeError(f"registering {archive}: {response.status_code} {response.text}")
        # The archive's minWorkers wins over initial_workers in 0.12: the first worker is READY now.
        self.client.wait_ready(name)
        elapsed = time.monotonic() - start
        time.sleep(0.3)  # let the log catch up
        phases = worker_phases(self.log_since(offset), name)
        spawn = min((p["spawn_at"] for p in phases), default=None)
        metrics = parse_prometheus(self.client.metrics())
        load_ms = [v for (n, lab), v in metrics.items() if n == "WorkerLoadTime" and f"-{name}_" in lab]
        out = {
            "register_s": elapsed,
            "post_to_spawn_s": spawn - posted if spawn else None,
            "phases": phases,
            "worker_load_ms": load_ms,
        }
        if len(self.client.workers(name)) != workers:
            self.set_workers(name, workers)
        return out

    def set_workers(self, name: str, workers: int) -> None:
        params = {"min_worker": workers, "max_worker": workers, "synchronous": "true"}
        self.client.manage("PUT", f"/models/{name}", params=params).raise_for_status()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = self.client.workers(name)
            if len(current) == workers and all(w["status"] == "READY" for w in current):
                return
            time.sleep(0.1)
        raise TimeoutError(f"{name}: not {workers} READY workers: {self.client.workers(name)}")

    def scale_up(self, name: str, workers: int) -> dict:
        """One more worker (PUT min_worker): its start without the archive unpack."""
        offset = self.log_offset()
        start = time.monotonic()
        response = self.client.manage(
            "PUT",
            f"/models/{name}",
            params={"min_worker": workers + 1, "max_worker": workers + 1, "synchronous": "true"},
        )
        response.raise_for_status()
        self.client.wait_ready(name, count=workers + 1)
        elapsed = time.monotonic() - start
        time.sleep(0.3)
        phases = worker_phases(self.log_since(offset), name)
        self.set_workers(name, workers)
        return {"scale_up_s": elapsed, "phases": phases}

    def workers(self, name: str) -> list[psutil.Process]:
        out = []
        for worker in self.client.workers(name):
            with contextlib.suppress(psutil.Error, KeyError, TypeError):
                out.append(psutil.Process(int(worker["pid"])))
        return out

    def unregister(self, name: str) -> None:
        processes = self.workers(name)
        self.client.manage("DELETE", f"/models/{name}", params={"synchronous": "true"})
        deadline = time.monotonic() + 60
        while self.client.manage("GET", f"/models/{name}").ok and time.monotonic() < deadline:
            time.sleep(0.1)
        psutil.wait_procs(processes, timeout=30)


def worker_phases(lines: list[str], name: str) -> list[dict]:
    """Per worker started in ``lines``: spawn -> Python up (imports done) -> LOAD received ->
    handler ready -> frontend sees it loaded, from the log timestamps (seconds)."""
    marks: dict[str, dict[str, float]] = {}
    for line in lines:
        match = re.search(r"(W-\d+-" + re.escape(name) + r"_[\w.]+?)(-stdout)? ", line)
        if not match:
            continue
        worker, when = match.group(1), log_time(line)
        if when is None:
            continue
        mark = marks.setdefault(worker, {})
        if "Worker cmdline" in line:
            mark.setdefault("spawn", when)
        elif "s_name_part0=" in line:
            mark.setdefault("python_up", when)
        elif re.search(r"model_name: \S+, batchSize", line):
            mark.setdefault("load_cmd", when)
        elif " ready on " in line and "MODEL_LOG" in line:
            mark.setdefault("handler_ready", when)
        elif "WORKER_STARTED -> WORKER_MODEL_LOADED" in line:
            mark.setdefault("loaded", when)
    out = []
    for worker, mark in sorted(marks.items()):
        if {"spawn", "loaded"} <= set(mark):
            row = {"worker": worker, "spawn_at": mark["spawn"], "total_s": mark["loaded"] - mark["spawn"]}
            order = ["spawn", "python_up", "load_cmd", "handler_ready", "loaded"]
            present = [k for k in order if k in mark]
            for a, b in itertools.pairwise(present):
                row[f"{a}->{b}_s"] = mark[b] - mark[a]
            out.append(row)
    return out


def batch_metrics(lines: list[str], name: str) -> dict:
    """HandlerTime / PredictionTime / ParseTime / ForwardTime and forecasts per batch, from the
    worker's [METRICS] lines in ts_log.log (deduplicated: TorchServe's built-in logging wrote each twice)."""
    seen, values = set(), {}
    for line in lines:
        if "[METRICS]" not in line or f"ModelName:{name}," not in line:
            continue
        match = _METRIC.search(line)
        if not match:
            continue
        key = line.split("[METRICS]", 1)[1]
        if key in seen:
            continue
        seen.add(key)
        values.setdefault(match.group(1), []).append(float(match.group(2)))
    out = {"batches": len(values.get("PredictionTime", []))}
    for metric in ("HandlerTime", "PredictionTime", "ParseTime", "ForwardTime"):
        if values.get(metric):
            out[f"{metric}_p50_ms"] = statistics.median(values[metric])
    served = values.get("ForecastsServed", [])
    if served and out["batches"]:
        out["mean_batch"] = sum(served) / out["batches"]
    return out


def request_bodies(config: ModelConfig, count: int = 64) -> list[bytes]:
    """Distinct valid requests (one window each) for a model: what every load level sends."""
    return [embeddings_csv(rows=config.seq_len, input_size=config.input_size, seed=s) for s in range(count)]


class Probe:
    """The in-process fast forward, timed right before a server measurement, in this process while
    the server idles. This VM's speed drifts by tens of percent within minutes (other tenants of
    the host, invisible from inside), so each server figure is also compared with a forward
    measured next to it."""

    def __init__(self, config: ModelConfig) -> None:
        from alm_forecaster.model import XLSTMForecaster

        torch.manual_seed(0)
        self.config = config
        self.net = XLSTMForecaster(config).eval()

    def __call__(self, batch: int, threads: int, runs: int) -> dict:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            x = torch.randn(batch, self.config.seq_len, self.config.input_size)
            cpu0, meter = time.process_time(), CpuMeter()
            ms = bench_model.median_ms(lambda: self.net(x), runs)
            return {
                "batch": batch,
                "threads": threads,
                "ms": ms,
                "wps": batch / ms * 1e3,
                "foreign_cores": meter.foreign_cores(time.process_time() - cpu0),
            }
        finally:
            torch.set_num_threads(previous)

    def paired(self, threads: int) -> tuple:
        """A ``before_each`` for `run_load` at concurrency 1: one timed batch-1 forward before every
        request, so the forward and the requests are measured in the same seconds."""
        x = torch.randn(1, self.config.seq_len, self.config.input_size)
        samples: list[float] = []

        def before_each() -> None:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.inference_mode():
                    start = time.perf_counter()
                    self.net(x)
                    samples.append((time.perf_counter() - start) * 1e3)
            finally:
                torch.set_num_threads(previous)

        return before_each, samples


@dataclass
class CellConfig:
    model: str
    workers: int
    threads: int
    batch_size: int
    delay_ms: int

    @property
    def label(self) -> str:
        return f"{self.workers}w x {self.threads}t, batch {self.batch_size}, delay {self.delay_ms} ms"


def serve_cell(
    server: Server,
    archive: str,
    name: str,
    cell: CellConfig,
    concurrencies: list[int],
    bodies: list[bytes],
    max_requests: int,
    max_seconds: float,
    scale_up: bool = False,
    warmup_s: float = 1.5,
    probe: Probe | None = None,
    jvm_warmup_s: float = 0.0,
) -> dict:
    """Register ``archive`` with the cell's settings, run each concurrency, unregister.
    ``jvm_warmup_s``: seconds of load at concurrency 8 first (a fresh JVM's JIT compiler keeps a
    core busy for tens of seconds; a long-running server's does not)."""
    out: dict = {"config": asdict(cell), "levels": []}
    out["start"] = server.register(archive, name, cell.batch_size, cell.delay_ms, cell.workers)
    try:
        if scale_up:
            out["scale"] = server.scale_up(name, cell.workers)
        client = server.client
        headers = {"Content-Type": "text/csv", **client.auth()}
        path = f"/predictions/{name}"
        if jvm_warmup_s:
            run_load(client.inference_url, path, headers, bodies, 8, 1_000_000, jvm_warmup_s)
        for concurrency in concurrencies:
            # Warm up (the JVM's JIT above all) at this concurrency, not measured.
            warm = run_load(client.inference_url, path, headers, bodies, concurrency, 20_000, warmup_s)
            if warm.errors:
                out["warmup_errors"] = warm.error_samples
            reference, before_each, paired = None, None, []
            if probe is not None and concurrency == 1:
                before_each, paired = probe.paired(cell.threads)
            elif probe is not None and concurrency >= 32:
                reference = probe(32, 2, 3)
            workers = server.workers(name)
            before = parse_prometheus(client.metrics())
            offset = server.log_offset()
            cpu0 = {"jvm": _proc_cpu(server.jvm) if server.jvm else 0.0, "workers": sum(map(_proc_cpu, workers))}
            client_cpu0 = time.process_time()
            meter = CpuMeter()
            n = max(max_requests, 16 * concurrency) if concurrency > 1 else min(max_requests, 200)
            result = run_load(
                client.inference_url, path, headers, bodies, concurrency, n, max_seconds, before_each=before_each
            )
            client_cpu = own_cpu = time.process_time() - client_cpu0
            jvm_cpu = (_proc_cpu(server.jvm) if server.jvm else 0.0) - cpu0["jvm"]
            worker_cpu = sum(map(_proc_cpu, workers)) - cpu0["workers"]
            foreign = meter.foreign_cores(own_cpu + jvm_cpu + worker_cpu)
            if paired:  # the forwards ran in this process: not the client's cost
                client_cpu -= sum(paired) / 1e3 * cell.threads
                reference = {
                    "batch": 1,
                    "threads": cell.threads,
                    "ms": statistics.median(paired),
                    "wps": 1e3 / statistics.median(paired),
                    "paired": True,
                }
            elif reference is not None:  # the stricter of the forwards just before and just after
                after_probe = probe(32, 2, 3)
                reference = {
                    **reference,
                    "before_wps": reference["wps"],
                    "after_wps": after_probe["wps"],
                    "wps": max(reference["wps"], after_probe["wps"]),
                }
                reference["ms"] = 32 / reference["wps"] * 1e3
            time.sleep(0.3)
            after = parse_prometheus(client.metrics())
            served = result.requests + result.errors
            level = {
                "concurrency": concurrency,
                "requests": result.requests,
                "errors": result.errors,
                "error_samples": result.error_samples,
                "seconds": result.seconds,
                # c=1 with the paired forwards: 1 / mean latency (the forwards run between requests)
                "throughput": 1e3 / statistics.fmean(result.latencies_ms)
                if paired and result.latencies_ms
                else result.throughput,
                "p50_ms": result.percentile(50),
                "p90_ms": result.percentile(90),
                "p99_ms": result.percentile(99),
                "mean_ms": statistics.fmean(result.latencies_ms) if result.latencies_ms else float("nan"),
                "client_cpu_ms_per_req": client_cpu / served * 1e3 if served else 0.0,
                "jvm_cpu_ms_per_req": jvm_cpu / served * 1e3 if served else 0.0,
                "worker_cpu_ms_per_req": worker_cpu / served * 1e3 if served else 0.0,
                "foreign_cores": foreign,
                "rss_jvm_mb": _rss_mb(server.jvm),
                "rss_workers_mb": [_rss_mb(w) for w in workers],
                "probe": reference,
            }
            count = metric_sum(after, "ts_inference_requests_total", model_name=name) - metric_sum(
                before, "ts_inference_requests_total", model_name=name
            )
            if count > 0:
                for metric, key in (
                    ("ts_queue_latency_microseconds", "queue_ms"),
                    ("ts_inference_latency_microseconds", "frontend_ms"),
                ):
                    delta = metric_sum(after, metric, model_name=name) - metric_sum(before, metric, model_name=name)
                    level[key] = delta / count / 1e3
            level.update(batch_metrics(server.log_since(offset), name))
            out["levels"].append(level)
            print(
                f"  {name} [{cell.label}] c={concurrency}: {result.requests} ok, {result.errors} errors, "
                f"p50 {level['p50_ms']:.1f} ms, p99 {level['p99_ms']:.1f} ms, {result.throughput:.1f} req/s, "
                f"batch {level.get('mean_batch', 0):.1f}, foreign load {foreign:.2f} cores",
                flush=True,
            )
    finally:
        server.unregister(name)
    return out


def _rss_mb(process: psutil.Process | None) -> float:
    try:
        return process.memory_info().rss / 2**20 if process else float("nan")
    except psutil.Error:
        return float("nan")


#: py-spy frame fragments -> what a lone request's worker time is spent on (first match wins).
PROFILE_STAGES = (
    ("forward", ("Forecaster.forward ",)),
    ("parse + validate", ("Forecaster.parse ",)),
    ("response JSON", ("forecast_response ", "XLSTMHandler.respond ")),
    ("handler metrics", ("XLSTMHandler.record ", "XLSTMHandler.emit ")),
    ("handler, other", ("xlstm_handler.py",)),
    ("TorchServe: read the request", ("retrieve_msg ",)),
    ("TorchServe: predict bookkeeping", ("ts/service.py",)),
)


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
        client = server.client
        headers = {"Content-Type": "text/csv", **client.auth()}
        path = f"/predictions/{name}"
        run_load(client.inference_url, path, headers, bodies, 1, 20_000, 3.0)
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
            target=lambda: done.append(
                run_load(client.inference_url, path, headers, bodies, 1, 1_000_000, seconds + 3.0)
            )
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


def build_archives(models: list[BenchModel], threads: list[int], store: Path) -> dict[tuple[str, int], str]:
    """One archive per (model, torch threads): the model's effective YAML with handler.threads
    overridden. Returns (model, threads) -> registered model name (= archive name)."""
    names = {}
    for model in models:
        for count in threads:
            name = f"{model.name}_t{count}"
            config_path = build_archive.CONFIG_DIR / f"{model.name}.yaml"
            spec = build_archive.resolve_spec(
                model.name, checkpoint=model.checkpoint, config_path=config_path if config_path.exists() else None
            )
            spec.config.setdefault("handler", {})["threads"] = count
            spec.name = spec.archive_name = name
            build_archive.build(spec, store)
            names[(model.name, count)] = name
    return names


# --------------------------------------------------------------------------- worker start profile

_PROFILE_CODE = r"""
import json, sys, time
marks = {"interpreter": time.time()}
import torch
marks["import_torch"] = time.time()
import ts.model_service_worker  # noqa: F401  (what the worker imports before it listens)
marks["import_ts_worker"] = time.time()
sys.path.insert(0, sys.argv[2])
sys.path.insert(0, sys.argv[3])
import xlstm_handler  # noqa: F401
marks["import_handler"] = time.time()
import hashlib, io
from pathlib import Path
from alm_forecaster import checkpoint as ck
from alm_forecaster.forecaster import Forecaster, configure_threads
configure_threads(1)
path = Path(sys.argv[1])
raw = path.read_bytes(); marks["read_file"] = time.time()
digest = hashlib.sha256(raw).hexdigest(); marks["sha256"] = time.time()
payload = ck._safe_load(raw, path); marks["torch_load"] = time.time()
state, declared = payload["model_state_dict"], payload["config"]
config, _ = ck._reconcile_config(declared, state, payload.get("metadata") or {}, path)
ck._check_finite(state, path); marks["finite_check"] = time.time()
model = ck._empty_model(config); marks["build_model"] = time.time()
ck._check_tensors(model, state, path)
model.load_state_dict(state, strict=True); marks["load_state_dict"] = time.time()
start = time.time()
loaded = ck.load_checkpoint(path)
forecaster = Forecaster(loaded, "profile", device=torch.device("cpu"))
marks["_load_checkpoint_s"] = time.time() - start
print(json.dumps(marks))
"""


def profile_worker_start(checkpoint: Path, runs: int = 3) -> dict:
    """Time a fresh Python doing what a TorchServe worker does before it is READY."""
    samples = []
    for _ in range(runs):
        spawn = time.time()
        done = subprocess.run(
            [sys.executable, "-c", _PROFILE_CODE, str(checkpoint), str(ROOT / "handlers"), str(ROOT)],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
        )
        if done.returncode != 0:
            return {"error": done.stderr[-2000:]}
        marks = json.loads(done.stdout.strip().splitlines()[-1])
        whole = marks.pop("_load_checkpoint_s")
        order = [
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
        row = {"python_start_s": marks["interpreter"] - spawn}
        for a, b in itertools.pairwise(order):
            row[b + "_s"] = marks[b] - marks[a]
        row["all of it again: load_checkpoint + Forecaster_s"] = whole
        samples.append(row)
    return {k: statistics.median(s[k] for s in samples) for k in samples[0]}


# --------------------------------------------------------------------------- report


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def write_report(results: dict, out: Path, plot: Path | None, command: str) -> None:
    lines: list[str] = []
    add = lines.append
    m = results["machine"]
    add("# Benchmarks: in process vs TorchServe end to end vs the plain step-by-step path\n")
    add("Reproduce (one command; ~10 min on 2 cores; writes this file and the plot):\n")
    add(f"```bash\n{command}\n```\n")
    add(
        f"Measured {results['date']} on **{m['cpu']}** ({m['nproc']} vCPUs, {m['hypervisor'] or 'bare metal'}, "
        f"{m['cpu_flags']}; L2 {m['l2']}, L3 {m['l3']}), {m['memory_gib']} GiB RAM; {m['os']}; Python {m['python']}, "
        f"torch {m['torch']}, TorchServe {m['torchserve']} (archiver {m['torch_model_archiver']}), {m['java']}; "
        f"compiled kernel {'loaded' if m['native_kernel'] else 'NOT built'}. The load client runs on the same "
        "2 cores as the server (its CPU time per request is in the tables)."
    )
    add(
        f"\nLoad average at start {results['load_start']:.2f}, at end {results['load_end']:.2f}. "
        "*foreign* = cores used by other processes during a measurement (0 = quiet machine).\n"
    )
    add("```\n" + m["free_m"] + "\n```\n")
    foreign = [lv["foreign_cores"] for model in results["models"] for cell in model["serve"] for lv in cell["levels"]]
    foreign += [cell_lv["foreign_cores"] for cell in results.get("tuning", []) for cell_lv in cell["levels"]]
    foreign += [model["in_process"].get("foreign_cores", 0) for model in results["models"]]
    if foreign and max(foreign) > 0.25:
        add(
            f"**Warning: other processes used up to {max(foreign):.2f} cores during some measurements (column "
            "*foreign*); those figures are pessimistic. Rerun on a quiet machine (`--wait-quiet 1800`).**\n"
        )
    targets = results.get("targets")
    if targets:
        add("## Targets (full seed-size model)\n")
        add("| target | measured | ratio vs plain | holds |")
        add("|---|---|---|---|")
        for t in targets:
            add(f"| {t['target']} | {t['measured']} | {t['ratio']} | {'yes' if t['holds'] else '**no**'} |")
        add("")
    if results.get("parse"):
        _parse_section(results["parse"], add)
    for model in results["models"]:
        _model_section(model, add)
    analysis = breakdown(results)
    if analysis:
        add("## Where the time goes (full seed-size model, shipped defaults)\n")
        for line in analysis:
            add(f"* {line}")
        add("")
    if results.get("tuning"):
        _tuning_section(results["tuning"], add, results.get("default_config"))
        for line in defaults_rationale(results):
            add(f"* {line}")
        add("")
    if results.get("start_profile"):
        _start_section(results, add)
    if results.get("notes"):
        add("## Notes\n")
        for note in results["notes"]:
            add(f"* {note}")
        add("")
    if plot is not None:
        add(f"![latency vs throughput]({os.path.relpath(plot, out.parent)})\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


def _plain(model: dict) -> tuple[float, float]:
    """The plain path's batch-1 latency (ms) and best throughput (windows/s) of this run."""
    rows = model["in_process"]["rows"]
    b1 = next((r["plain_ms"] for r in rows if r["batch"] == 1), rows[0]["plain_ms"])
    return b1, max(r["plain_wps"] for r in rows)


def _model_section(model: dict, add) -> None:
    ip = model["in_process"]
    plain_b1, plain_best = _plain(model)
    add(f"## {model['label']}\n")
    add(
        "### In process\n\nMedians of several runs after a warm-up. *fast*: the served forward (compiled kernel); "
        "*pytorch*: the same forward without the kernel; *plain*: the step-by-step oracle (tests/oracle.py), the "
        "baseline of every ratio. *predict*: `Forecaster.predict` on CSV payloads (parse + validate + forward + "
        "response), i.e. the handler's work without TorchServe.\n"
    )
    add(
        "| batch | fast 2t ms | win/s | pytorch 2t ms | plain 2t ms | plain win/s | fast vs plain | fast 1t ms | "
        "win/s | predict 1t ms | predict 2t ms |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in ip["rows"]:
        b = row["batch"]
        t1, t2 = ip["threads"]["1"][str(b)], ip["threads"]["2"][str(b)]
        add(
            f"| {b} | {fmt(row['fast_ms'], 2)} | {fmt(row['fast_wps'])} | {fmt(row['pytorch_ms'], 2)} | "
            f"{fmt(row['plain_ms'])} | {fmt(row['plain_wps'])} | {fmt(row['speedup_vs_plain'])}x | "
            f"{fmt(t1['fast_ms'], 2)} | {fmt(b / t1['fast_ms'] * 1e3)} | {fmt(t1['predict_ms'], 2)} | "
            f"{fmt(t2['predict_ms'], 2)} |"
        )
    add(
        f"\nParse + validate of one {model['csv_shape']} CSV (`Forecaster.parse`): {fmt(ip['parse_ms'], 3)} ms. "
        f"Foreign load during these runs: {fmt(ip.get('foreign_cores'), 2)} cores.\n"
    )
    add(
        "### TorchServe end to end\n\nClosed loop, keep-alive connections, `Content-Type: text/csv`; *p50..p99*: "
        "client-side latency; *vs plain*: plain batch-1 latency / p50 and throughput / the plain path's best "
        "throughput. *queue*, *frontend*: TorchServe's mean QueueTime and inference latency per request "
        "(`ts_*_microseconds` deltas); *handler*, *predict*: median HandlerTime / PredictionTime per batch; "
        "*batch*: mean requests per batch; CPU ms per request of the client, the JVM and the workers; "
        "*req/s* at c=1 is 1 / mean latency (in-process forwards run between its requests, see below); "
        "*next to it*: the in-process fast forward timed just before the level (c=1: batch 1 with the worker's "
        "threads, ms; c=32: batch 32 with 2 threads, windows/s).\n"
    )
    add(
        "| config | conc | ok | err | p50 ms | p90 | p99 | req/s | next to it | vs plain (lat / thr) | queue ms | "
        "frontend ms | handler ms | predict ms | batch | CPU ms/req client / JVM / workers | RSS MB JVM / workers | "
        "foreign |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in model["serve"]:
        label = CellConfig(**cell["config"]).label
        for lv in cell["levels"]:
            add(
                f"| {label} | {lv['concurrency']} | {lv['requests']} | {lv['errors']} | {fmt(lv['p50_ms'])} | "
                f"{fmt(lv['p90_ms'])} | {fmt(lv['p99_ms'])} | {fmt(lv['throughput'])} | {_probe(lv)} | "
                f"{fmt(plain_b1 / lv['p50_ms'])}x / {fmt(lv['throughput'] / plain_best)}x | "
                f"{fmt(lv.get('queue_ms'))} | {fmt(lv.get('frontend_ms'))} | {fmt(lv.get('HandlerTime_p50_ms'))} | "
                f"{fmt(lv.get('PredictionTime_p50_ms'))} | {fmt(lv.get('mean_batch'))} | "
                f"{fmt(lv['client_cpu_ms_per_req'], 2)} / {fmt(lv['jvm_cpu_ms_per_req'], 2)} / "
                f"{fmt(lv['worker_cpu_ms_per_req'], 2)} | {fmt(lv['rss_jvm_mb'], 0)} / "
                f"{', '.join(fmt(r, 0) for r in lv['rss_workers_mb'])} | {fmt(lv['foreign_cores'], 2)} |"
            )
    errors = [s for c in model["serve"] for lv in c["levels"] for s in lv["error_samples"]]
    if errors:
        add("\nError samples: " + "; ".join(f"`{e}`" for e in errors[:5]))
    add("\n### Worker start\n")
    add(
        "*POST -> READY*: registration on the running JVM (synchronous) until the worker is READY, or the "
        "scale-up call; *unpack*: POST until the worker process is spawned (the archive is extracted); then "
        "the worker's phases from the log timestamps.\n"
    )
    add(
        "| start | POST -> READY s | unpack s | TorchServe WorkerLoadTime ms | spawn -> Python up (imports) s | "
        "-> LOAD s | -> handler ready s | -> frontend READY s |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for cell in model["serve"]:
        for kind, data in (("register", cell["start"]), ("scale-up", cell.get("scale"))):
            if not data:
                continue
            total = data.get("register_s", data.get("scale_up_s"))
            for ph in data["phases"]:
                add(
                    f"| {kind} {CellConfig(**cell['config']).label} {ph['worker']} | {fmt(total, 2)} | "
                    f"{fmt(data.get('post_to_spawn_s'), 2)} | "
                    f"{', '.join(fmt(v, 0) for v in data.get('worker_load_ms', [])) or '-'} | "
                    f"{fmt(ph.get('spawn->python_up_s'), 2)} | {fmt(ph.get('python_up->load_cmd_s'), 2)} | "
                    f"{fmt(ph.get('load_cmd->handler_ready_s'), 2)} | {fmt(ph.get('handler_ready->loaded_s'), 2)} |"
                )
    add("")


def _parse_section(parse: dict, add) -> None:
    add(
        f"## Parse + validate one request ({parse['rows']}-row, {parse['columns']}-column CSV, "
        f"{parse['bytes']} bytes)\n"
    )
    add(
        f"`scripts/bench_parse.py` (median and p99 of {parse['runs']} runs; the same checks on every path, and the "
        f"same window out; budget {parse['limit_ms']} ms):\n"
    )
    add("| path | p50 ms | p99 ms |")
    add("|---|---|---|")
    for name, r in parse["paths"].items():
        add(f"| {name} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} |")
    add("")


def _probe(level: dict) -> str:
    probe = level.get("probe")
    if not probe:
        return "-"
    return f"{probe['ms']:.1f} ms" if probe["batch"] == 1 else f"{probe['wps']:.0f}/s"


def _tuning_section(tuning: list[dict], add, shipped: dict | None = None) -> None:
    add("## Tuning: workers x torch threads x batchSize x maxBatchDelay (full seed-size model)\n")
    add(
        "*c=1 over fwd*: p50 minus the batch-1 forward (worker's threads) timed just before; *c=32 / fwd*: "
        "throughput over the in-process batch-32 forward (2 threads) timed just before.\n"
    )
    add(
        "| config | c=1 p50 ms | c=1 p99 | c=1 over fwd ms | c=8 req/s | c=8 p50 | c=32 req/s | c=32 / fwd | "
        "c=32 p50 | c=32 p99 | c=32 batch | errors | foreign (max) |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in tuning:
        lv = {x["concurrency"]: x for x in cell["levels"]}
        one, eight, many = lv.get(1, {}), lv.get(8, {}), lv.get(32, {})
        over = one["p50_ms"] - one["probe"]["ms"] if one.get("probe") else None
        share = many["throughput"] / many["probe"]["wps"] * 100 if many.get("probe") else None
        label = CellConfig(**cell["config"]).label
        if shipped and all(cell["config"][k] == shipped[k] for k in shipped):
            label = f"**{label} (shipped)**"
        add(
            f"| {label} | {fmt(one.get('p50_ms'))} | {fmt(one.get('p99_ms'))} | "
            f"{fmt(over)} | {fmt(eight.get('throughput'))} | {fmt(eight.get('p50_ms'))} | "
            f"{fmt(many.get('throughput'))} | {fmt(share, 0)}% | "
            f"{fmt(many.get('p50_ms'))} | {fmt(many.get('p99_ms'))} | {fmt(many.get('mean_batch'))} | "
            f"{sum(x['errors'] for x in cell['levels'])} | "
            f"{fmt(max(x['foreign_cores'] for x in cell['levels']), 2)} |"
        )
    add("")


def _start_section(results: dict, add) -> None:
    prof = results["start_profile"]
    add("## Worker start-up profile (full seed-size model)\n")
    add("A fresh Python doing what a TorchServe worker does before it is READY (median of 3):\n")
    add("| phase | s |")
    add("|---|---|")
    for key, value in prof.items():
        add(f"| {key.removesuffix('_s')} | {fmt(value, 3)} |")
    add("")


def plot_results(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for cell in model["serve"]:
            levels = cell["levels"]
            x = [lv["throughput"] for lv in levels]
            y = [lv["p50_ms"] for lv in levels]
            label = f"TorchServe {CellConfig(**cell['config']).label}"
            (line,) = ax.plot(x, y, "o-", label=label)
            ax.plot(x, [lv["p99_ms"] for lv in levels], "v:", color=line.get_color(), alpha=0.6)
            for lv in levels:
                ax.annotate(
                    f"c{lv['concurrency']}",
                    (lv["throughput"], lv["p50_ms"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
        rows = model["in_process"]["rows"]
        for key, style, label in (
            ("fast", "s--", "in process, fast forward (2 threads)"),
            ("plain", "x-.", "in process, plain step-by-step (2 threads)"),
        ):
            ax.plot(
                [r[f"{key}_wps"] for r in rows],
                [r[f"{key}_ms"] for r in rows],
                style,
                color="gray" if key == "fast" else "black",
                label=label,
            )
            for r in rows:
                ax.annotate(
                    f"b{r['batch']}",
                    (r[f"{key}_wps"], r[f"{key}_ms"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, -9),
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("throughput (forecasts/s)")
        ax.set_ylabel("latency (ms): p50 solid, p99 dotted")
        ax.set_title(textwrap.fill(model["label"], 70), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- targets


def defaults_rationale(results: dict) -> list[str]:
    """Why the shipped numbers, from the tuning sweep of this run."""
    shipped = results.get("default_config") or {}
    rows = []
    for cell in results.get("tuning", []):
        lv = {x["concurrency"]: x for x in cell["levels"]}
        if 1 in lv and 32 in lv:
            rows.append((cell["config"], lv[1], lv[32]))
    if not rows:
        return []

    def label(config: dict) -> str:
        return CellConfig(**config).label

    def best(pred) -> tuple | None:
        chosen = [r for r in rows if pred(r[0])]
        return max(chosen, key=lambda r: r[2]["throughput"]) if chosen else None

    ours = next((r for r in rows if all(r[0][k] == shipped[k] for k in shipped)), None)
    top = best(lambda c: True)
    one_t1 = best(lambda c: c["workers"] == 1 and c["threads"] == 1)
    one_t2 = best(lambda c: c["workers"] == 1 and c["threads"] == 2)
    out = [f"Most requests/s at c=32 in this sweep: {label(top[0])}, {top[2]['throughput']:.1f} req/s."]
    if ours:
        out.append(
            f"Shipped: {label(ours[0])}: {ours[2]['throughput']:.1f} req/s at c=32 (p99 {ours[2]['p99_ms']:.0f} ms), "
            f"lone request p50 {ours[1]['p50_ms']:.1f} ms."
        )
    for name, row in (("best 1 worker x 1 thread", one_t1), ("best 1 worker x 2 threads", one_t2)):
        if row:
            out.append(
                f"{name}: {label(row[0])}: {row[2]['throughput']:.1f} req/s at c=32, lone request p50 "
                f"{row[1]['p50_ms']:.1f} ms."
            )
    out.append(
        "maxBatchDelay is what a lone request pays on top of everything else when batchSize > 1; 1 ms is the "
        "smallest useful value (0 makes TorchServe 0.12 stop collecting after the second request: batches of <= 2)."
    )
    return out


def profile_lines(profile: dict | None) -> list[str]:
    """The worker profile (`profile_lone_requests`) as one paragraph of the report."""
    if not profile:
        return []
    stages = ", ".join(f"{k} {v:.2f} ms" for k, v in profile["ms_per_request"].items())
    return [
        f"Lone request, from inside the worker (py-spy, wall clock, {profile['requests']} requests in "
        f"{profile['seconds']:.0f} s, one worker so that it sees them all): {profile['wall_ms_per_request']:.2f} "
        f"ms per request = {stages}. The waiting is the time between the worker's answer and the next request: "
        "TorchServe's front end both ways (incl. maxBatchDelay), HTTP and the client."
    ]


def _default_cell(results: dict) -> tuple[dict, dict] | tuple[None, None]:
    seed = next((m for m in results["models"] if m["name"] == "seed_untrained"), None)
    if seed is None:
        return None, None
    default = results["default_config"]
    for cell in seed["serve"]:
        if all(cell["config"][k] == default[k] for k in ("workers", "threads", "batch_size", "delay_ms")):
            return seed, cell
    return seed, None


def breakdown(results: dict) -> list[str]:
    """The default cell's latency at c=1 and CPU per request at c=32, split by stage."""
    profile = profile_lines(results.get("worker_profile"))
    seed, cell = _default_cell(results)
    if cell is None:
        return profile
    out: list[str] = []
    ip = seed["in_process"]
    threads = str(results["default_config"]["threads"])
    lv = {x["concurrency"]: x for x in cell["levels"]}
    if 1 in lv and "frontend_ms" in lv[1]:
        one = lv[1]
        forward = (one.get("probe") or {}).get("ms", ip["threads"][threads]["1"]["fast_ms"])
        handler = one.get("HandlerTime_p50_ms", float("nan"))
        worker_forward, worker_parse = one.get("ForwardTime_p50_ms", float("nan")), one.get("ParseTime_p50_ms", 0)
        out.append(
            f"Lone request (c=1): client p50 {one['p50_ms']:.2f} ms, in-process forward next to it {forward:.2f} ms "
            f"(+{one['p50_ms'] - forward:.2f} ms). Inside: handler {handler:.2f} ms = forward in the worker "
            f"{worker_forward:.2f} ms + parse {worker_parse:.2f} ms (in-process, warm: {ip['parse_ms']:.2f} ms) + "
            f"response and metrics {handler - worker_forward - worker_parse:.2f} ms; worker protocol "
            f"{one['frontend_ms'] - one.get('queue_ms', 0) - one.get('PredictionTime_p50_ms', 0):.2f} ms (TorchServe's "
            f"mean latency minus queue and PredictionTime); queue {one.get('queue_ms', 0):.2f} ms (maxBatchDelay "
            f"{cell['config']['delay_ms']} ms); HTTP, JVM and client {one['p50_ms'] - one['frontend_ms']:.2f} ms "
            "(client p50 minus TorchServe's mean latency)."
        )
    out += profile
    if 32 in lv:
        many = lv[32]
        cpu = many["client_cpu_ms_per_req"] + many["jvm_cpu_ms_per_req"] + many["worker_cpu_ms_per_req"]
        batch = many.get("mean_batch", 0)
        near = min(ip["threads"]["1"], key=lambda b: abs(int(b) - batch)) if batch else "32"
        per_window = ip["threads"]["1"][near]["fast_ms"] / int(near)
        served = many.get("ForwardTime_p50_ms", float("nan")) / batch if batch else float("nan")
        reference = (many.get("probe") or {}).get("wps") or next(r for r in ip["rows"] if r["batch"] == 32)["fast_wps"]
        out.append(
            f"Saturated (c=32): {many['throughput']:.1f} req/s in batches of {batch:.1f}. CPU per request: workers "
            f"{many['worker_cpu_ms_per_req']:.2f} ms, JVM {many['jvm_cpu_ms_per_req']:.2f} ms, load client "
            f"{many['client_cpu_ms_per_req']:.2f} ms: {cpu:.2f} ms in all, a ceiling of {2e3 / cpu:.0f} req/s on 2 "
            f"cores. The workers' forward took {served:.2f} ms per window (median batch forward / mean batch), against "
            f"{per_window:.2f} ms for the in-process 1-thread forward at batch {near} with the other core idle: the "
            "two vCPUs slow each other down when both compute (shared core or caches; each worker also streams its "
            f"own copy of the weights). The in-process batch-32 forward with 2 threads on the same weights: "
            f"{reference:.1f} windows/s, {2e3 / reference:.2f} CPU-ms per window. Other processes used "
            f"{many['foreign_cores']:.2f} cores meanwhile."
        )
    return out


def targets(results: dict) -> list[dict]:
    """The issue's targets for the seed model and the shipped defaults, from this run's figures.

    Each server figure is judged against the in-process forward measured right next to it (the
    level's probe); the same comparison against the in-process table from the start of the run
    is shown too."""
    seed, cell = _default_cell(results)
    if cell is None:
        return []
    plain_b1, plain_best = _plain(seed)
    ip = seed["in_process"]
    threads = str(results["default_config"]["threads"])
    start_b1 = ip["threads"][threads]["1"]["fast_ms"]
    start_b32 = next(r for r in ip["rows"] if r["batch"] == 32)["fast_wps"]
    lv = {x["concurrency"]: x for x in cell["levels"]}
    out = []
    if 1 in lv:
        p50 = lv[1]["p50_ms"]
        ref = (lv[1].get("probe") or {}).get("ms", start_b1)
        out.append(
            {
                "target": f"c=1: p50 <= forward p50 + 5 ms (batch-1 fast forward, {threads} thread(s), as the worker)",
                "measured": f"p50 {p50:.2f} ms; forward next to it {ref:.2f} ms: +{p50 - ref:.2f} ms (forward at the "
                f"start of the run {start_b1:.2f} ms: +{p50 - start_b1:.2f} ms)",
                "ratio": f"plain b1 {plain_b1:.0f} ms / p50 = {plain_b1 / p50:.1f}x",
                "holds": p50 <= ref + 5,
            }
        )
    if 32 in lv:
        thr = lv[32]["throughput"]
        ref = (lv[32].get("probe") or {}).get("wps", start_b32)
        out.append(
            {
                "target": "c=32: throughput >= 80% of the in-process batch-32 forward (2 threads), zero errors",
                "measured": f"{thr:.1f} req/s, {lv[32]['errors']} errors; forward next to it {ref:.1f} windows/s: "
                f"{thr / ref * 100:.0f}% (at the start of the run {start_b32:.1f}/s: "
                f"{thr / start_b32 * 100:.0f}%)",
                "ratio": f"{thr / plain_best:.1f}x the plain path's best ({plain_best:.1f}/s)",
                "holds": thr >= 0.8 * ref and lv[32]["errors"] == 0,
            }
        )
    begin = cell["start"]
    load_ms = max(begin["worker_load_ms"]) if begin["worker_load_ms"] else float("nan")
    scale = [c["scale"]["scale_up_s"] for c in seed["serve"] if c.get("scale")]
    worst = max([begin["register_s"], *scale])
    out.append(
        {
            "target": "worker start (archive load + model ready) <= 3 s after the JVM is up",
            "measured": f"registration POST -> READY {begin['register_s']:.2f} s (archive unpack "
            f"{fmt(begin.get('post_to_spawn_s'), 2)} s); scale-up {', '.join(f'{x:.2f}' for x in scale)} s; "
            f"TorchServe WorkerLoadTime {load_ms / 1e3:.2f} s",
            "ratio": f"= {worst / (plain_b1 / 1e3):.1f} plain batch-1 forwards ({plain_b1 / 1e3:.2f} s each)",
            "holds": worst <= 3.0,
        }
    )
    return out


# --------------------------------------------------------------------------- main


def bench_models(quick: bool, workdir: Path) -> list[BenchModel]:
    if quick:
        path = write_checkpoint(workdir / "tiny.pt", TINY, seed=7)
        return [BenchModel("tiny", path, TINY, "Tiny model (input 8, hidden 16; smoke run)")]
    if not SEED_CHECKPOINT.exists():
        from scripts import make_seed_checkpoint

        make_seed_checkpoint.main([str(SEED_CHECKPOINT)])
    seed = load_checkpoint(SEED_CHECKPOINT).config
    spec = build_archive.resolve_spec(DEFAULT_MODEL)
    default = load_checkpoint(spec.checkpoint).config
    return [
        BenchModel(
            "seed_untrained",
            SEED_CHECKPOINT,
            seed,
            f"Full seed-size model (seed_untrained: input {seed.input_size}, hidden {seed.hidden_size}, "
            f"{seed.num_layers} layers, {seed.num_blocks} blocks, {seed.output_size} steps; random weights)",
        ),
        BenchModel(
            DEFAULT_MODEL,
            spec.checkpoint,
            default,
            f"Default model ({DEFAULT_MODEL}: input {default.input_size}, hidden {default.hidden_size}, "
            f"{default.num_layers} layer(s), {default.num_blocks} blocks, {default.output_size} steps)",
        ),
    ]


def default_config() -> dict:
    config = build_archive.read_yaml(build_archive.DEFAULT_CONFIG)
    return {
        "workers": config.get("minWorkers", 1),
        "threads": (config.get("handler") or {}).get("threads", 1),
        "batch_size": config.get("batchSize", 1),
        "delay_ms": config.get("maxBatchDelay", 0),
    }


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
    load_start = wait_quiet(args.max_load, args.wait_quiet) if args.wait_quiet else os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    results: dict = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "load_start": load_start,
        "models": [],
        "notes": [],
    }
    default = default_config()
    if args.delay_ms is not None:
        default["delay_ms"] = args.delay_ms
    results["default_config"] = default
    try:
        print("parse + validate", flush=True)
        results["parse"] = bench_parse.measure(runs=300 if args.quick else 3000)
        models = bench_models(args.quick, workdir)
        for model in models:
            input_size, seq_len = model.config.input_size, model.config.seq_len
            payloads = request_bodies(model.config)
            print(f"in process: {model.name}", flush=True)
            for attempt in range(3):  # others' jobs skew in-process figures: redo them (twice at most)
                meter = CpuMeter()
                cpu0 = time.process_time()
                ip = in_process(model, args.batches, args.runs, args.plain_runs, payloads)
                ip["foreign_cores"] = meter.foreign_cores(time.process_time() - cpu0)
                if ip["foreign_cores"] < 0.2 or attempt == 2 or args.quick:
                    break
                print(f"  other processes used {ip['foreign_cores']:.2f} cores meanwhile: measuring again", flush=True)
                if args.wait_quiet:
                    wait_quiet(args.max_load, min(args.wait_quiet, 600))
            ip = json.loads(json.dumps(ip))  # int keys -> str, as in the JSON file
            results["models"].append(
                {
                    "name": model.name,
                    "label": model.label,
                    "in_process": ip,
                    "serve": [],
                    "csv_shape": f"{seq_len}-row, {input_size + 1}-column",
                }
            )
        store = workdir / "model_store"
        threads = sorted({1, 2, default["threads"]}) if not args.no_tune else sorted({default["threads"]})
        names = build_archives(models, threads, store)
        overrides = {"vmargs": args.vmargs} if args.vmargs else None  # else the shipped config.properties
        with start_torchserve(workdir, store, [], overrides) as client:
            server = Server(client)
            for model, entry in zip(models, results["models"], strict=True):
                payloads = request_bodies(model.config)
                probe = Probe(model.config)
                name = names[(model.name, default["threads"])]
                for i, batch_size in enumerate(sorted(set(args.batch_sizes) | {default["batch_size"]})):
                    cell = CellConfig(
                        model.name,
                        default["workers"],
                        default["threads"],
                        batch_size,
                        default["delay_ms"] if batch_size > 1 else 0,
                    )
                    first = not any(m["serve"] for m in results["models"])
                    entry["serve"].append(
                        serve_cell(
                            server,
                            f"{name}.mar",
                            name,
                            cell,
                            args.concurrency,
                            payloads,
                            args.requests,
                            args.seconds,
                            scale_up=i == 0 and not args.quick,
                            warmup_s=args.warmup,
                            probe=probe,
                            jvm_warmup_s=args.jvm_warmup if first else 0.0,
                        )
                    )
            if models:
                print("profiling a worker under lone requests (py-spy)", flush=True)
                seed = models[0]
                cell = CellConfig(seed.name, 1, default["threads"], default["batch_size"], default["delay_ms"])
                name = names[(seed.name, default["threads"])]
                bodies = request_bodies(seed.config)
                seconds = 4.0 if args.quick else 15.0
                results["worker_profile"] = profile_lone_requests(
                    server, f"{name}.mar", name, cell, bodies, seconds, workdir
                )
            if not args.no_tune:
                results["tuning"] = tune(server, models[0], names, args)
        if not args.quick:
            print("profiling worker start", flush=True)
            results["start_profile"] = profile_worker_start(models[0].checkpoint)
    finally:
        results["load_end"] = os.getloadavg()[0]
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    results["targets"] = targets(results)
    results["notes"] = NOTES
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    plot_results(results, args.plot)
    write_report(results, args.out, args.plot, command)
    print(f"wrote {args.out} and {args.plot}")
    for t in results["targets"]:
        print(f"{'HOLDS' if t['holds'] else 'FAILS'}: {t['target']}: {t['measured']} ({t['ratio']})")
    return 0


NOTES = [
    "This machine is a 2-vCPU VM whose speed drifts by tens of percent within minutes (other tenants of "
    "the host, invisible from inside the VM: the *foreign* column stays near 0 meanwhile). Hence the "
    "in-process forward timed next to each server level (*next to it*): at c=1 one batch-1 forward before "
    "every request, in the same seconds; at c=32 a batch-32 forward before and after the level, the faster of "
    "the two counting. The targets are judged against those; the comparison with the in-process table from "
    "the start of the run is shown too.",
    "A fresh JVM's JIT compiler keeps most of a core busy for tens of seconds (measured: C2 compiler threads "
    "at 3-5 CPU-ms per request during the first ~30 s, still 0.6-3.5 ms after 100 s of lone requests); the run "
    "starts with --jvm-warmup seconds of load, and each level with --warmup seconds, none of them measured. "
    "C1 only (--vmargs '... -XX:TieredStopAtLevel=1') was measured too and is not shipped: JVM CPU per lone "
    "request 2.4 ms instead of 6.0 and 0.6 instead of 1.05 ms at c=32, but TorchServe hashes each archive (SHA-256) at "
    "registration, which C1 code does 8x slower: 0.8-1.2 s instead of 0.1 s for the 49 MB seed-size archive, "
    "and worker start failed its 3 s target (3.24 s).",
    "Logging (log4j2.xml, async_logging=true): TorchServe's built-in configuration wrote ~15 lines per request "
    "into ts_log.log (every front-end line twice, two DEBUG lines per request, access lines three times), "
    "synchronously in the thread that answers; the shipped one writes ~5, once each, from a background thread "
    "(ts_log.log 30,052 -> 10,673 lines for the same ~2,000 requests).",
    "TorchServe 0.12: the archive's minWorkers wins over the registration's initial_workers, so the benchmark "
    "sets the worker count with PUT /models/<m>?min_worker=N&max_worker=N; batch_size and max_batch_delay "
    "given at registration do win over the archive's.",
    "TorchServe's HandlerTime and PredictionTime are Prometheus gauges (last value only); the per-batch "
    "values here come from the worker's [METRICS] lines that TorchServe copies into ts_log.log.",
    "2 torch threads per worker collapse as soon as something else wants a core (OpenMP and the kernel's "
    "per-step barriers spin): measured on a loaded machine, a lone request took 470 ms instead of ~25 ms.",
]

TUNING = [  # (workers, threads, batchSize, maxBatchDelay ms)
    (1, 1, 8, 1),
    (1, 1, 16, 1),
    (1, 2, 8, 1),
    (1, 2, 16, 1),
    (2, 1, 4, 1),
    (2, 1, 8, 1),
    (2, 1, 8, 2),
    (2, 1, 8, 5),
    (2, 1, 16, 1),
    (2, 1, 32, 1),
]


def tune(server: Server, model: BenchModel, names: dict, args: argparse.Namespace) -> list[dict]:
    payloads = request_bodies(model.config)
    probe = Probe(model.config)
    out = []
    for workers, threads, batch_size, delay in TUNING:
        cell = CellConfig(model.name, workers, threads, batch_size, delay)
        name = names[(model.name, threads)]
        out.append(
            serve_cell(
                server,
                f"{name}.mar",
                name,
                cell,
                [1, 8, 32],
                payloads,
                args.requests,
                args.seconds,
                warmup_s=args.warmup,
                probe=probe,
            )
        )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
