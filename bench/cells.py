"""A benchmark cell: one model registered with one configuration (workers, torch threads,
batchSize, maxBatchDelay) and measured at each concurrency; and the tuning sweep's cells."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

from alm_forecaster.config import ModelConfig
from alm_forecaster.testing.synthetic import embeddings_csv

from .inprocess import BenchModel, Probe
from .load import LoadResult, run_load
from .machine import CpuMeter, proc_cpu, rss_mb
from .server import Server, batch_metrics, metric_sum, parse_prometheus

#: The tuning sweep of the full seed-size model: (workers, threads, batchSize, maxBatchDelay ms).
TUNING = [
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


def request_bodies(config: ModelConfig, count: int = 64) -> list[bytes]:
    """Distinct valid requests (one window each) for a model: what every load level sends."""
    return [embeddings_csv(rows=config.seq_len, input_size=config.input_size, seed=s) for s in range(count)]


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
        url, headers, path = server.client.inference_url, server.inference_headers(), f"/predictions/{name}"
        if jvm_warmup_s:
            run_load(url, path, headers, bodies, 8, 1_000_000, jvm_warmup_s)
        for concurrency in concurrencies:
            # Warm up (the JVM's JIT above all) at this concurrency, not measured.
            warm = run_load(url, path, headers, bodies, concurrency, 20_000, warmup_s)
            if warm.errors:
                out["warmup_errors"] = warm.error_samples
            level, result = measure_level(server, name, cell, concurrency, bodies, max_requests, max_seconds, probe)
            out["levels"].append(level)
            print(
                f"  {name} [{cell.label}] c={concurrency}: {result.requests} ok, {result.errors} errors, "
                f"p50 {level['p50_ms']:.1f} ms, p99 {level['p99_ms']:.1f} ms, {result.throughput:.1f} req/s, "
                f"batch {level.get('mean_batch', 0):.1f}, foreign load {level['foreign_cores']:.2f} cores",
                flush=True,
            )
    finally:
        server.unregister(name)
    return out


def measure_level(
    server: Server,
    name: str,
    cell: CellConfig,
    concurrency: int,
    bodies: list[bytes],
    max_requests: int,
    max_seconds: float,
    probe: Probe | None,
) -> tuple[dict, LoadResult]:
    """One measured load level on the registered ``name``: the client's latencies and throughput,
    TorchServe's own figures (Prometheus deltas, the log's [METRICS] lines), the CPU time per
    request of the client, the JVM and the workers, memory, and the in-process forward next to it;
    with the load's own result."""
    client = server.client
    url, headers, path = client.inference_url, server.inference_headers(), f"/predictions/{name}"
    reference, before_each, paired = None, None, []
    if probe is not None and concurrency == 1:
        before_each, paired = probe.paired(cell.threads)
    elif probe is not None and concurrency >= 32:
        reference = probe(32, 2, 3)
    workers = server.workers(name)
    before = parse_prometheus(client.metrics())
    offset = server.log_offset()
    cpu0 = {"jvm": proc_cpu(server.jvm) if server.jvm else 0.0, "workers": sum(map(proc_cpu, workers))}
    client_cpu0 = time.process_time()
    meter = CpuMeter()
    n = max(max_requests, 16 * concurrency) if concurrency > 1 else min(max_requests, 200)
    result = run_load(url, path, headers, bodies, concurrency, n, max_seconds, before_each=before_each)
    client_cpu = own_cpu = time.process_time() - client_cpu0
    jvm_cpu = (proc_cpu(server.jvm) if server.jvm else 0.0) - cpu0["jvm"]
    worker_cpu = sum(map(proc_cpu, workers)) - cpu0["workers"]
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
        "rss_jvm_mb": rss_mb(server.jvm),
        "rss_workers_mb": [rss_mb(w) for w in workers],
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
    return level, result


def tune(
    server: Server,
    model: BenchModel,
    names: dict,
    max_requests: int,
    max_seconds: float,
    warmup_s: float,
) -> list[dict]:
    """The `TUNING` cells of ``model`` at concurrency 1, 8 and 32."""
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
                max_requests,
                max_seconds,
                warmup_s=warmup_s,
                probe=probe,
            )
        )
    return out
