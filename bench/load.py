"""The load generator: closed-loop HTTP clients on keep-alive connections."""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LoadResult:
    """What one load level got back: successes with their latencies, errors with a few samples."""

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
