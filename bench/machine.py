"""The machine a benchmark runs on: its description, its load, and CPU and memory meters."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time

import psutil
import torch

from alm_forecaster import native


def machine() -> dict:
    """What the report says about the machine and the software versions."""
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
        "native_kernel": native.variant(),
        "free_m": _run(["free", "-m"]).strip(),
    }


def _run(command: list[str], stderr: bool = False) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stderr if stderr else done.stdout


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


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


def proc_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of a process so far; 0 once it is gone."""
    try:
        t = process.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def rss_mb(process: psutil.Process | None) -> float:
    """Resident memory of a process in MiB; NaN when there is none or it is gone."""
    try:
        return process.memory_info().rss / 2**20 if process else float("nan")
    except psutil.Error:
        return float("nan")
