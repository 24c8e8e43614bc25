"""The benchmark's TorchServe: its archives, registering and scaling models over the management
API, and what the server says about itself (Prometheus metrics, the log's timestamps and
``[METRICS]`` lines)."""

from __future__ import annotations

import contextlib
import itertools
import re
import statistics
import time
from datetime import datetime
from pathlib import Path

import psutil
import requests

from alm_ops import archive
from alm_ops.launcher import TorchServe

from .inprocess import BenchModel

#: TorchServe log timestamps: 2026-11-29T01:23:12,054
_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d),(\d{3}) ")
_METRIC = re.compile(r"\[METRICS\](\w+)\.\w+:([-\d.eE+]+)\|#([^|]*)\|")


def build_archives(models: list[BenchModel], threads: list[int], store: Path) -> dict[tuple[str, int], str]:
    """One archive per (model, torch threads): the model's effective YAML with handler.threads
    overridden. Returns (model, threads) -> registered model name (= archive name)."""
    names = {}
    for model in models:
        for count in threads:
            name = f"{model.name}_t{count}"
            config_path = archive.CONFIG_DIR / f"{model.name}.yaml"
            spec = archive.resolve_spec(
                model.name, checkpoint=model.checkpoint, config_path=config_path if config_path.exists() else None
            )
            spec.config.setdefault("handler", {})["threads"] = count
            spec.name = spec.archive_name = name
            archive.build(spec, store)
            names[(model.name, count)] = name
    return names


class Server:
    """A private TorchServe (alm_ops.launcher.start_torchserve) and what the benchmark does with it."""

    def __init__(self, client: TorchServe) -> None:
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

    def register(self, archive_file: str, name: str, batch_size: int, delay_ms: int, workers: int) -> dict:
        """Register ``archive_file`` synchronously with these settings and ``workers`` workers: how
        long it took, and the first worker's start-up phases from the log."""
        offset = self.log_offset()
        params = {
            "url": archive_file,
            "batch_size": batch_size,
            "max_batch_delay": delay_ms,
            "initial_workers": workers,
            "synchronous": "true",
        }
        posted = time.time()
        start = time.monotonic()
        response = self.client.manage("POST", "/models", params=params)
        if response.status_code != 200:
            raise RuntimeError(f"registering {archive_file}: {response.status_code} {response.text}")
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

    def inference_headers(self) -> dict[str, str]:
        """What every benchmark request sends: a raw CSV body and the inference token."""
        return {"Content-Type": "text/csv", "Authorization": f"Bearer {self.client.keys['inference']}"}

    def workers(self, name: str) -> list[psutil.Process]:
        out = []
        for worker in self.client.workers(name):
            with contextlib.suppress(psutil.Error, KeyError, TypeError):
                out.append(psutil.Process(int(worker["pid"])))
        return out

    def unregister(self, name: str) -> None:
        """Unregister ``name`` and wait until its workers are gone."""
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


def log_time(line: str) -> float | None:
    """The timestamp of a TorchServe log line (seconds since the epoch); None for other lines."""
    match = _TS.match(line)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").timestamp() + int(match.group(2)) / 1e3


def parse_prometheus(text: str) -> dict[tuple[str, str], float]:
    """Prometheus text -> {(metric name, label text): value} for the samples with labels."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        match = re.match(r"^(\w+)\{(.*)\} (\S+)$", line)
        if match:
            out[(match.group(1), match.group(2))] = float(match.group(3))
    return out


def metric_sum(metrics: dict, name: str, **labels: str) -> float:
    """Sum of the `parse_prometheus` samples of ``name`` whose labels include ``labels``."""
    return sum(
        v for (n, lab), v in metrics.items() if n == name and all(f'{k}="{w}"' in lab for k, w in labels.items())
    )


def batch_metrics(lines: list[str], name: str) -> dict:
    """HandlerTime / PredictionTime / ParseTime / ForwardTime and forecasts per batch, from the
    worker's [METRICS] lines in ts_log.log (deduplicated: TorchServe's built-in logging
    configuration writes each twice)."""
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
