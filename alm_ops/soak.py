"""Soak test: hold C concurrent clients for N minutes against TorchServe, loopback only.

    python scripts/soak.py                                 # starts its own TorchServe (default model)
    python scripts/soak.py --minutes 10 --concurrency 16 --bad-fraction 0.2 --report soak.json
    python scripts/soak.py --url http://127.0.0.1:8080 --management-url http://127.0.0.1:8081 \\
                           --token-file .serve/key_file.json --model sp500_xlstm    # a running server

Without ``--url`` the script starts a TorchServe of its own exactly as the tests do
(alm_ops.launcher ``start_torchserve``: free loopback ports, its own temp/log directories, the
archive built by alm_ops.archive, the shipped config.properties with the ports filled in) and
stops it at the end.

Each client thread sends, back to back, a mix of good uploads (for a model of daily prices, the
default: slices of the shipped NASDAQ closes and random walks; for an embeddings model: real
OHLCV and embeddings windows; every transport: multipart ``data``/``file``, raw text/csv and
octet-stream) and, with probability ``--bad-fraction``, bad ones (empty, wrong delimiter,
missing column, NaN, too few rows, UTF-16, binary, JSON, a bad date, ...) with the 4xx each
must get.
Every good answer is compared with the in-process `Forecaster` on the same checkpoint
(``--checkpoint``; default models/<model>.pt): a wrong number counts as an unexpected error.

Reported per minute: requests, errors by class (expected 4xx, unexpected: wrong status, 5xx,
wrong forecast, client exception), latency p50/p90/p99 (good requests), RSS of the JVM and of
every worker (sampled every few seconds, minute mean), worker restarts (PID changes), the
machine's load and the CPU the server used. Drift: last minute against the first minute after
``--warmup-minutes``, for p99 and for RSS. Targets: no unexpected error, p99 drift < 10%,
RSS drift < 5%; ``--check`` makes the exit status 1 when one is missed.

Bounded: ``--minutes`` (at most 180) and ``--max-requests`` (at most 2,000,000); only loopback
URLs are accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import psutil
import requests

from alm_forecaster.forecaster import Forecaster
from alm_ops import archive, serve_config
from alm_ops.api import ApiError, TorchServeApi, custom_metadata
from alm_ops.keys import Token, read_keys
from alm_ops.launcher import start_torchserve
from alm_ops.soak_payloads import (
    Payload,
    bad_payloads,
    bad_price_payloads,
    good_payloads,
    price_payloads,
    send_kwargs,
)

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
MAX_MINUTES = 180
MAX_REQUESTS = 2_000_000
TARGETS = {"p99_drift": 0.10, "rss_drift": 0.05}
TRANSPORTS = ("multipart-data", "multipart-file", "text-csv", "octet-stream")


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Server:
    """The server under load: its APIs and the model sent to."""

    api: TorchServeApi
    model: str

    def describe(self, customized: bool = False) -> dict:
        return self.api.describe(self.model, customized=customized)


@dataclass
class Record:
    t: float  # completion, seconds since the start
    latency_ms: float
    good: bool
    outcome: str  # "ok", "expected-4xx", or the unexpected class


@dataclass
class Sample:
    t: float
    jvm_rss: float
    workers: dict[int, float]  # pid -> RSS bytes
    server_cpu: float  # % of one core, JVM + workers, since the previous sample
    load1: float
    machine_cpu: float  # % of all cores busy, since the previous sample


@dataclass
class Run:
    records: list[Record] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    unexpected: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # unexpected class -> first example
    pids_seen: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(server: Server, payloads: list[Payload], bad: list[Payload], args, run: Run, stop, seed: int, t0: float):
    rng = random.Random(seed)
    while not stop.is_set():
        payload = rng.choice(bad) if bad and rng.random() < args.bad_fraction else rng.choice(payloads)
        transport = rng.choice(TRANSPORTS)
        kwargs = send_kwargs(transport, payload.body)
        start = time.monotonic()
        try:
            response = server.api.predict(server.model, **kwargs)
            outcome = judge(payload, response)
            detail = f"{payload.name} via {transport}: {response.status_code} {response.text[:200]!r}"
        except requests.RequestException as exc:
            outcome, detail = f"exception:{type(exc).__name__}", f"{payload.name} via {transport}: {exc}"
        end = time.monotonic()
        with run.lock:
            if len(run.records) >= args.max_requests:
                stop.set()
                break
            run.records.append(Record(end - t0, (end - start) * 1e3, payload.status == 200, outcome))
            if outcome not in ("ok", "expected-4xx"):
                run.unexpected[outcome] += 1
                run.examples.setdefault(outcome, detail)


def judge(payload: Payload, response: requests.Response) -> str:
    if response.status_code != payload.status:
        kind = "5xx" if response.status_code >= 500 else "wrong-status"
        return f"{kind}:{response.status_code}"
    if payload.status != 200:
        return "expected-4xx"
    if payload.expected is not None:
        body = response.json()
        want = payload.expected
        prices_ok = np.allclose(body.get("predicted_prices", []), want["predicted_prices"], rtol=1e-5, atol=0)
        if not prices_ok or body.get("current_price") != want["current_price"]:
            return "wrong-forecast"
    return "ok"


def sampler(server: Server, run: Run, stop, t0: float, every: float) -> None:
    cpu_prev: dict[int, float] = {}
    psutil.cpu_percent(None)
    last = time.monotonic()
    while not stop.wait(every):
        now = time.monotonic()
        try:
            workers = server.describe()["workers"]
        except (ApiError, ValueError, KeyError, IndexError):
            continue
        pids = [w["pid"] for w in workers if w.get("pid", -1) > 0]
        rss, cpu_now, jvm = {}, {}, None
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                rss[pid] = process.memory_info().rss
                cpu_now[pid] = sum(process.cpu_times()[:2])
                jvm = jvm or process.parent()
        jvm_rss = 0.0
        if jvm is not None:
            with contextlib.suppress(psutil.Error):
                jvm_rss = jvm.memory_info().rss
                cpu_now[jvm.pid] = sum(jvm.cpu_times()[:2])
        used = sum(cpu_now[p] - cpu_prev[p] for p in cpu_now if p in cpu_prev)
        cpu_prev = cpu_now
        with run.lock:
            for pid in pids:
                if pid not in run.pids_seen:
                    run.pids_seen.append(pid)
            run.samples.append(
                Sample(now - t0, jvm_rss, rss, 100 * used / (now - last), os.getloadavg()[0], psutil.cpu_percent(None))
            )
        last = now


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarise(run: Run, args, elapsed: float, initial_pids: list[int]) -> dict:
    minutes = max(1, int(elapsed // 60 + 1e-6))  # full minutes only (a trailing part is in the totals)
    per_minute = []
    for m in range(minutes):
        records = [r for r in run.records if m * 60 <= r.t < (m + 1) * 60]
        good = [r.latency_ms for r in records if r.good and r.outcome == "ok"]
        samples = [s for s in run.samples if m * 60 <= s.t < (m + 1) * 60]
        workers: dict[int, list[float]] = defaultdict(list)
        for s in samples:
            for pid, rss in s.workers.items():
                workers[pid].append(rss)
        per_minute.append(
            {
                "minute": m + 1,
                "requests": len(records),
                "per_second": round(len(records) / 60, 1),
                "expected_4xx": sum(r.outcome == "expected-4xx" for r in records),
                "unexpected": sum(r.outcome not in ("ok", "expected-4xx") for r in records),
                "p50_ms": round(percentile(good, 50), 1),
                "p90_ms": round(percentile(good, 90), 1),
                "p99_ms": round(percentile(good, 99), 1),
                "jvm_rss_mb": round(float(np.mean([s.jvm_rss for s in samples])) / 2**20, 1) if samples else None,
                "worker_rss_mb": {pid: round(float(np.mean(v)) / 2**20, 1) for pid, v in workers.items()},
                "server_cpu_pct": round(float(np.mean([s.server_cpu for s in samples])), 0) if samples else None,
                "machine_cpu_pct": round(float(np.mean([s.machine_cpu for s in samples])), 0) if samples else None,
                "load1": round(float(np.mean([s.load1 for s in samples])), 2) if samples else None,
            }
        )
    first = min(args.warmup_minutes, len(per_minute) - 1)
    base, end = per_minute[first], per_minute[-1]

    def drift(a, b):
        return None if not a or not b or a != a or b != b else round(b / a - 1, 4)

    worker_drift = {
        pid: drift(base["worker_rss_mb"].get(pid), end["worker_rss_mb"].get(pid)) for pid in end["worker_rss_mb"]
    }
    restarts = len([p for p in run.pids_seen if p not in initial_pids])
    counts = Counter(r.outcome for r in run.records)
    report = {
        "settings": {
            "model": args.model,
            "minutes": args.minutes,
            "concurrency": args.concurrency,
            "bad_fraction": args.bad_fraction,
            "warmup_minutes": args.warmup_minutes,
            "sample_seconds": args.sample_seconds,
            "cores": os.cpu_count(),
        },
        "elapsed_s": round(elapsed, 1),
        "requests": len(run.records),
        "ok": counts["ok"],
        "expected_4xx": counts["expected-4xx"],
        "unexpected": dict(run.unexpected),
        "unexpected_examples": run.examples,
        "worker_restarts": restarts,
        "worker_pids": run.pids_seen,
        "per_minute": per_minute,
        "drift": {
            "compared": f"minute {base['minute']} (first after warm-up) -> minute {end['minute']}",
            "p99": drift(base["p99_ms"], end["p99_ms"]),
            "p50": drift(base["p50_ms"], end["p50_ms"]),
            "jvm_rss": drift(base["jvm_rss_mb"], end["jvm_rss_mb"]),
            "worker_rss": worker_drift,
        },
    }
    drifts = [report["drift"]["jvm_rss"], *worker_drift.values()]
    p99 = report["drift"]["p99"]
    report["targets"] = {
        "zero_unexpected_errors": not run.unexpected,
        f"p99_drift_below_{TARGETS['p99_drift']:.0%}": p99 is not None and p99 < TARGETS["p99_drift"],
        f"rss_drift_below_{TARGETS['rss_drift']:.0%}": all(d is not None and d < TARGETS["rss_drift"] for d in drifts),
        "no_worker_restart": restarts == 0,
    }
    return report


def print_report(report: dict) -> None:
    s = report["settings"]
    print(
        f"\nsoak: model {s['model']}, {report['elapsed_s']:.0f} s, concurrency {s['concurrency']}, "
        f"bad fraction {s['bad_fraction']}, {s['cores']} cores"
    )
    print(
        f"requests {report['requests']}: ok {report['ok']}, expected 4xx {report['expected_4xx']}, "
        f"unexpected {sum(report['unexpected'].values())} {report['unexpected'] or ''}; worker restarts "
        f"{report['worker_restarts']}"
    )
    for kind, example in report["unexpected_examples"].items():
        print(f"  first {kind}: {example}")
    print(
        f"{'min':>3} {'req/s':>6} {'4xx':>5} {'unexp':>5} {'p50ms':>7} {'p90ms':>7} {'p99ms':>7} "
        f"{'JVM MB':>7} {'workers MB':>12} {'srvCPU%':>7} {'allCPU%':>7} {'load1':>5}"
    )
    for m in report["per_minute"]:
        workers = "/".join(f"{v:.0f}" for v in m["worker_rss_mb"].values()) or "-"
        print(
            f"{m['minute']:>3} {m['per_second']:>6} {m['expected_4xx']:>5} {m['unexpected']:>5} {m['p50_ms']:>7} "
            f"{m['p90_ms']:>7} {m['p99_ms']:>7} {m['jvm_rss_mb'] or '-':>7} {workers:>12} "
            f"{m['server_cpu_pct'] or '-':>7} {m['machine_cpu_pct'] or '-':>7} {m['load1'] or '-':>5}"
        )
    d = report["drift"]
    print(f"drift, {d['compared']}: p99 {d['p99']}, p50 {d['p50']}, JVM RSS {d['jvm_rss']}, workers {d['worker_rss']}")
    print("targets: " + ", ".join(f"{k} {'MET' if v else 'MISSED'}" for k, v in report["targets"].items()))


def soak(server: Server, args) -> dict:
    described = server.describe(customized=True)
    meta = custom_metadata(described)
    input_size = int(meta.get("config", {}).get("input_size", 128))
    seq_len = int(meta.get("seq_len", 20))
    accepts = list(meta.get("accepts", ["embeddings"]))
    rng = np.random.default_rng(args.seed)
    if "prices" in accepts:  # a single-price model (the default, alm_quantiles)
        rows_needed = int(meta.get("rows_needed", seq_len))
        good = price_payloads(rows_needed, rng)
        bad = bad_price_payloads(good[0].body, rows_needed)
    else:
        good = good_payloads(input_size, seq_len, accepts, rng)
        bad = bad_payloads(next(p.body for p in good if p.name.startswith("emb-")), seq_len)
    checkpoint = args.checkpoint or ROOT / "models" / f"{args.model}.pt"
    if checkpoint.exists():
        version = str(described.get("modelVersion", "1.0"))
        offline = Forecaster.from_checkpoint(checkpoint, name=args.model, version=version, device="cpu")
        for payload, answer in zip(good, offline.predict([p.body for p in good]), strict=True):
            if not answer.ok:
                raise SystemExit(f"good payload {payload.name} is refused in-process: {answer.body['error']}")
            payload.expected = answer.body
        print(f"{len(good)} good payloads checked against {checkpoint.name} in-process; {len(bad)} bad ones")
    else:
        print(f"no checkpoint {checkpoint}: good answers are checked for status only")
    initial = [w["pid"] for w in described["workers"]]
    run = Run(pids_seen=list(initial))
    stop = threading.Event()
    t0 = time.monotonic()
    threads = [
        threading.Thread(target=client, args=(server, good, bad, args, run, stop, args.seed + i, t0), daemon=True)
        for i in range(args.concurrency)
    ]
    threads.append(threading.Thread(target=sampler, args=(server, run, stop, t0, args.sample_seconds), daemon=True))
    for thread in threads:
        thread.start()
    deadline = t0 + args.minutes * 60
    try:
        while time.monotonic() < deadline and not stop.is_set():
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            done = len(run.records)
            print(
                f"  {time.monotonic() - t0:6.0f} s: {done} requests, unexpected {sum(run.unexpected.values())}",
                flush=True,
            )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=args.timeout + 10)
    return summarise(run, args, time.monotonic() - t0, initial)


def check_loopback(url: str) -> str:
    host = urlparse(url).hostname
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"{url}: only loopback servers may be soaked (got host {host!r})")
    return url.rstrip("/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--bad-fraction", type=float, default=0.2, help="share of bad uploads (0..1)")
    parser.add_argument("--warmup-minutes", type=int, default=1, help="minutes left out of the drift baseline")
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="RSS/worker sampling period")
    parser.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="default: the first model of config.properties' load_models")
    parser.add_argument("--checkpoint", type=Path, help="to check every forecast (default models/<model>.pt)")
    parser.add_argument("--url", help="inference URL of a running server (default: start one)")
    parser.add_argument("--management-url", help="its management URL (needed with --url)")
    parser.add_argument("--token-file", type=Path, help="its key_file.json (needed with --url)")
    parser.add_argument("--workdir", type=Path, help="where a self-started server lives (default: a temp dir)")
    parser.add_argument("--report", type=Path, help="write the full report as JSON here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes must be in (0, {MAX_MINUTES}]")
    if not 0 < args.max_requests <= MAX_REQUESTS:
        parser.error(f"--max-requests must be in (0, {MAX_REQUESTS}]")
    if not 1 <= args.concurrency <= 256 or not 0 <= args.bad_fraction <= 1:
        parser.error("--concurrency must be 1..256 and --bad-fraction 0..1")

    args.model = args.model or serve_config.load_models()[0]
    if args.url:
        if not args.management_url or not args.token_file:
            parser.error("--url needs --management-url and --token-file")
        keys = read_keys(args.token_file, ("inference", "management"))
        tokens = {kind: Token(key, args.token_file, kind) for kind, key in keys.items()}
        api = TorchServeApi(
            check_loopback(args.url), check_loopback(args.management_url), tokens=tokens, timeout=args.timeout
        )
        report = soak(Server(api, args.model), args)
    else:
        report = _soak_own_server(args)
    print_report(report)
    if args.report:
        args.report.write_text(json.dumps(report, indent=2) + "\n")
        print(f"report: {args.report}")
    return 1 if args.check and not all(report["targets"].values()) else 0


def _soak_own_server(args) -> dict:
    """A TorchServe started exactly as the tests start theirs, with the shipped JVM settings."""
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        store = workdir / "model_store"
        if archive.main(["--model", args.model, "--export-path", str(store)]) != 0:
            raise SystemExit(f"cannot build the archive of {args.model}")
        started = time.monotonic()
        with start_torchserve(workdir, store, [args.model]) as ts:
            print(f"TorchServe ready in {time.monotonic() - started:.1f} s at {ts.inference_url} (workdir {workdir})")
            ts.timeout = args.timeout
            return soak(Server(ts, args.model), args)


if __name__ == "__main__":
    raise SystemExit(main())
