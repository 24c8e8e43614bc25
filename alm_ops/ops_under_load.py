"""Operations under load: what scaling, a version rollout, a killed worker and a stopped server
do to the forecasts in flight.

    python scripts/ops_under_load.py [--clients 8] [--lead 2] [--tail 2] [--ops OP,OP,...]
                                     [--kinds raw,bulk] [--json PATH] [--workdir DIR]

Starts a private TorchServe (alm_ops.launcher.start_torchserve: free loopback ports, its own
directories, the shipped config.properties) serving the default model from an archive built
with its shipped archive config (archive_configs/<model>.yaml, via alm_ops.archive). For each
operation, ``--clients`` threads send forecasts back to back (examples/nasdaq_close.csv and
synthetic single-price series, multipart ``data``) from ``--lead`` seconds before the
operation until ``--tail`` seconds after it. Every 200 is compared with the in-process
`Forecaster.predict` for its file.

Operations, in this order (the stopping ones last, each on a fresh server):

  scale-up          1 -> 4 workers                 (lifecycle scale --min 4)
  scale-down        4 -> 1 worker                  (lifecycle scale --min 1)
  scale-down-steps  4 -> 3 -> 2 -> 1, one call each (lifecycle scale, waiting for each state)
  rollout           register the next version (asynchronously, waits until READY), set-default
                    to it, unregister the old one (lifecycle register/set-default/unregister)
  kill-worker       SIGKILL one worker process; TorchServe starts a new one
  sigterm           SIGTERM to the JVM only (what `torchserve --stop`, scripts/stop.sh and the
                    container entrypoint send)
  sigterm-group     SIGTERM to every process of the server at once (what `tini -g` sends to a
                    container whose TorchServe runs in its process group)
  pod-stop          the clients go through the pod's token gateway (docker/token_gateway.py);
                    the gateway gets SIGTERM and drains, TorchServe's preStop hook
                    (docker/prestop.py) waits until the gateway is gone, then every process of
                    the server gets SIGTERM (the Kubernetes pod's shutdown, deploy/k8s)

Kinds of client (``--kinds``), each a run of its own: ``raw`` makes one attempt per request
(what the server does), ``bulk`` is alm_ops.bulk.Client with its retries (what a client that
follows docs/client.md loses). The stopping operations run with raw clients only: afterwards
there is no server left to retry against.

Each request ends as one of: ``200`` (``wrong forecast`` when it differs), ``<status> <type>:
<message>`` (TorchServe's own error) or ``<status> handler: <error>``, ``refused`` (connection
refused: the server never accepted the request), ``no answer`` (sent, then the connection
closed without an answer), ``timeout``. The table lists per operation and kind of client: how
long the operation took, requests sent, answered 200, retried (bulk: 200 after more than one
attempt) and failed by outcome. Bounded: loopback only, at most 16 clients, at most 30 s of
lead and tail, every wait has a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psutil
import requests

from alm_forecaster import csv_protocol
from alm_forecaster.forecast import Forecast
from alm_forecaster.forecaster import Forecaster, Request, configure_threads
from alm_ops import archive, lifecycle, serve_config
from alm_ops.api import TorchServeApi, server_message
from alm_ops.bulk import Client
from alm_ops.gateway import Gateway, start_gateway
from alm_ops.keys import Token
from alm_ops.launcher import TorchServe, start_torchserve

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "nasdaq_close.csv"
OPERATIONS = (
    "scale-up",
    "scale-down",
    "scale-down-steps",
    "rollout",
    "kill-worker",
    "sigterm",
    "sigterm-group",
    "pod-stop",
)
STOPPING = ("sigterm", "sigterm-group", "pod-stop")
KINDS = ("raw", "bulk")
#: Seconds any one wait (a state, a process) may take before the measurement gives up.
WAIT_S = 120.0


@dataclass
class Tally:
    """One operation under one kind of client."""

    operation: str
    clients: str
    seconds: float = 0.0
    sent: int = 0
    ok: int = 0
    retried: int = 0
    failed: Counter = field(default_factory=Counter)
    #: bulk clients: why attempts failed (each one was retried or is among `failed`)
    attempts_failed: Counter = field(default_factory=Counter)
    #: outcomes of the requests already sent when the operation started and not answered yet
    in_flight: Counter = field(default_factory=Counter)
    #: (seconds from the operation's start to the answer, outcome) of every request that failed
    failures: list = field(default_factory=list)
    did: str = ""

    def to_json(self) -> dict:
        counters = ("failed", "attempts_failed", "in_flight")
        return {**asdict(self), **{name: dict(getattr(self, name)) for name in counters}}

    def row(self) -> str:
        failed, caught = _counts(self.failed), _counts(self.in_flight)
        retried = f"{self.retried} ({_counts(self.attempts_failed)})" if self.retried else "0"
        cells = (self.operation, self.clients, f"{self.seconds:.1f}", self.sent, self.ok, retried, failed, caught)
        return "| " + " | ".join(str(c) for c in cells) + " |"


def _counts(counter: Counter) -> str:
    return ", ".join(f"{n} {what}" for what, n in counter.most_common()) or "0"


def inputs(directory: Path, count: int = 8) -> list[Path]:
    """examples/nasdaq_close.csv and ``count - 1`` synthetic single-price series (300 rows)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [EXAMPLE]
    for seed in range(1, count):
        rng = np.random.default_rng(seed)
        closes = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal(300)))
        days = np.busday_offset("2020-01-01", np.arange(300), roll="forward")
        path = directory / f"series_{seed}.csv"
        path.write_text("Date,Close\n" + "".join(f"{d},{c!r}\n" for d, c in zip(days, closes.tolist(), strict=True)))
        paths.append(path)
    return paths


def expected_forecasts(checkpoint: Path, paths: list[Path]) -> dict[str, list[float]]:
    """The in-process forecast (median per step) of every file: what each 200 must say."""
    configure_threads(1)
    forecaster = Forecaster.from_checkpoint(checkpoint)
    outcomes = forecaster.predict([Request(path.read_bytes()) for path in paths])
    bad = [str(p) for p, o in zip(paths, outcomes, strict=True) if not o.ok]
    if bad:
        raise SystemExit(f"the model refuses these inputs in-process: {bad}")
    return {str(p): o.body["predicted_prices"] for p, o in zip(paths, outcomes, strict=True)}


def _caused_by(exc: BaseException, kinds: tuple[type, ...]) -> bool:
    """Whether ``exc`` or anything it wraps (requests -> urllib3 -> socket) is one of ``kinds``."""
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kinds):
            return True
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
        todo += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
    return False


def failure_kind(exc: requests.RequestException) -> str:
    if _caused_by(exc, (ConnectionRefusedError,)):
        return "refused"
    if isinstance(exc, requests.Timeout):
        return "timeout"
    return "no answer"


def error_kind(status: int, response: requests.Response | None, message: str | None = None) -> str:
    """``500 InternalServerException: Worker died.`` or ``422 handler: <message>``."""
    body = None
    if response is not None:
        with contextlib.suppress(ValueError):
            body = response.json()
    if isinstance(body, dict) and "error" not in body and "message" in body:
        return f"{status} {body.get('type', '?')}: {body['message']}"
    text = message if message is not None else (server_message(response) if response is not None else "")
    return f"{status} handler: {text[:80]}"


class Load:
    """``clients`` threads forecasting the files back to back until the block ends; ``kind`` raw
    (one attempt each) or bulk (alm_ops.bulk.Client with its retries)."""

    def __init__(self, url: str, token: Token, model: str, expected: dict, clients: int, kind: str, timeout: float):
        self.model, self.expected, self.kind = model, expected, kind
        self.paths = list(expected)
        self.tally = Tally("", kind)
        self._lock, self._stop = threading.Lock(), threading.Event()
        #: when the operation started (monotonic), set by `mark`
        self.started: float | None = None
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]
        self.bulk = Client(url, model, token, retries=4, backoff=0.2, timeout=timeout)
        self.raw = TorchServeApi(url, tokens={"inference": token}, timeout=timeout, keep_alive=True)
        # Every attempt of the bulk client goes through this, to count why it had to retry.
        self.bulk.api.predict = self._counted(self.bulk.api.predict)

    def _counted(self, predict):
        def attempt(*args, **kwargs):
            try:
                response = predict(*args, **kwargs)
            except requests.RequestException as exc:
                self._note(failure_kind(exc))
                raise
            if response.status_code != 200:
                self._note(error_kind(response.status_code, response))
            return response

        return attempt

    def _note(self, outcome: str) -> None:
        with self._lock:
            self.tally.attempts_failed[outcome] += 1

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, index: int) -> None:
        k = index
        while not self._stop.is_set():
            path = self.paths[k % len(self.paths)]
            k += 1
            sent = time.monotonic()
            outcome, attempts = self._send(path)
            answered = time.monotonic()
            with self._lock:
                self.tally.sent += 1
                if self.started is not None and sent < self.started < answered:
                    self.tally.in_flight[outcome] += 1
                if outcome == "200":
                    self.tally.ok += 1
                    self.tally.retried += attempts > 1
                else:
                    self.tally.failed[outcome] += 1
                    since = answered - self.started if self.started is not None else None
                    self.tally.failures.append((since, outcome))

    def mark(self) -> None:
        """The operation starts now."""
        with self._lock:
            self.started = time.monotonic()

    def _send(self, path: str) -> tuple[str, int]:
        if self.kind == "bulk":
            result = self.bulk.forecast(path)
            if result.ok:
                return self._judge(path, result.forecast), result.attempts
            if result.status is None:
                return f"no answer after {result.attempts} attempts", result.attempts
            return error_kind(result.status, None, result.error), result.attempts
        body = Path(path).read_bytes()
        try:
            response = self.raw.predict(self.model, files={"data": (Path(path).name, body, "application/octet-stream")})
        except requests.RequestException as exc:
            return failure_kind(exc), 1
        if response.status_code != 200:
            return error_kind(response.status_code, response), 1
        try:
            forecast = csv_protocol.read_answer(response.json())
        except (ValueError, KeyError, TypeError):
            return "wrong forecast", 1
        return self._judge(path, forecast), 1

    def _judge(self, path: str, forecast: Forecast) -> str:
        same = np.allclose(forecast.point[0], self.expected[path], rtol=1e-5, atol=0)
        return "200" if same else "wrong forecast"


# -- the operations ----------------------------------------------------------------------------


class Operations:
    """The operations on one server, through the lifecycle CLI as an operator runs them."""

    def __init__(self, server: TorchServe, model: str, checkpoint: Path, stack: contextlib.ExitStack) -> None:
        self.server, self.model, self.checkpoint, self.stack = server, model, checkpoint, stack
        self.next_archive: archive.ArchiveSpec | None = None
        self.gateway: Gateway | None = None

    def front(self) -> tuple[str, Token]:
        """Where the clients send forecasts, with which token: the gateway once there is one."""
        if self.gateway is not None:
            return self.gateway.url, Token(self.gateway.token)
        return self.server.inference_url, self.server.tokens["inference"]

    def cli(self, *argv: str) -> str:
        """One lifecycle command against this server; what it printed (`RuntimeError` if it failed)."""
        key_file = str(self.server.workdir / "key_file.json")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = lifecycle.main([*argv, "--url", self.server.management_url, "--token-file", key_file])
        if code != 0:
            raise RuntimeError(f"lifecycle {' '.join(argv)} failed: {out.getvalue().strip()}")
        return " / ".join(line for line in out.getvalue().splitlines() if line.strip())

    def prepare(self, operation: str) -> None:
        """The state an operation starts from, set before the load starts."""
        workers = {"scale-up": 1, "scale-down": 4, "scale-down-steps": 4}.get(operation, 2)
        self.cli("scale", self.model, "--min", str(workers), "--timeout", str(WAIT_S))
        if operation == "pod-stop":
            self.gateway = self.stack.enter_context(start_gateway(self.server, self.server.workdir / "gateway"))
        if operation == "rollout":
            old = self.server.describe(self.model)["modelVersion"]
            new = f"{int(float(old)) + 1}.0"
            name = f"{self.model}_v{new.replace('.', '_')}"
            spec = archive.resolve_spec(self.model, self.checkpoint, version=new, archive_name=name)
            with contextlib.redirect_stdout(io.StringIO()):  # building an archive is not the rollout
                archive.build(spec, self.server.model_store)
            self.next_archive = spec

    def run(self, operation: str) -> str:
        """Do it and wait for the state it leads to; what was done."""
        if operation == "scale-up":
            return self.cli("scale", self.model, "--min", "4", "--timeout", str(WAIT_S))
        if operation == "scale-down":
            return self.cli("scale", self.model, "--min", "1", "--timeout", str(WAIT_S))
        if operation == "scale-down-steps":
            return " | ".join(self.cli("scale", self.model, "--min", n, "--timeout", str(WAIT_S)) for n in "321")
        if operation == "rollout":
            old = self.server.describe(self.model)["modelVersion"]
            spec = self.next_archive
            steps = [self.cli("register", spec.file_name, "--wait", "--timeout", str(WAIT_S))]
            steps.append(self.cli("set-default", self.model, spec.version))
            steps.append(self.cli("unregister", self.model, old))
            return " | ".join(steps)
        if operation == "kill-worker":
            return self.kill_worker()
        if operation == "pod-stop":
            return self.pod_stop()
        if operation in STOPPING:
            return self.stop(every_process=operation == "sigterm-group")
        raise ValueError(f"unknown operation {operation!r}")

    def kill_worker(self) -> str:
        workers = self.server.workers(self.model)
        pid = workers[-1]["pid"]
        os.kill(pid, signal.SIGKILL)

        def replaced():
            now = self.server.workers(self.model)
            done = len(now) == len(workers) and pid not in [w["pid"] for w in now]
            return (now if done and all(w["status"] == "READY" for w in now) else None), str(now)

        self.server.wait(replaced, f"a worker replacing {pid}", WAIT_S)
        return f"SIGKILL worker {pid}; a new one READY"

    def pod_stop(self) -> str:
        """The pod's shutdown: the gateway drains, the preStop hook waits for it, then TorchServe
        (as tini -g delivers the container's SIGTERM: to every process)."""
        self.gateway.process.send_signal(signal.SIGTERM)
        ports = [str(urlsplit(url).port) for url in (self.gateway.url, self.server.inference_url)]
        hook = ROOT / "docker" / "prestop.py"
        argv = ["--gateway-port", ports[0], "--inference-port", ports[1], "--gateway-grace", "10", "--timeout", "45"]
        waited = subprocess.run([sys.executable, str(hook), *argv], capture_output=True, text=True, timeout=60)
        self.gateway.process.wait(timeout=WAIT_S)
        lines = self.gateway.log.read_text(errors="replace").strip().splitlines()
        drained = lines[-1].split(" INFO ", 1)[-1] if lines else "(no log)"
        return f"gateway: SIGTERM, {drained} | {waited.stdout.strip()} | {self.stop(every_process=True)}"

    def stop(self, every_process: bool) -> str:
        processes = self.server.processes()
        jvm = [p for p in processes if "java" in p.name()]
        targets = processes if every_process else jvm
        for process in targets:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(processes, timeout=WAIT_S)
        for process in alive:  # never leave a process behind, even if the server hangs
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        left = f"; {len(alive)} still running after {WAIT_S:g} s, killed" if alive else ""
        return f"SIGTERM to {'every process' if every_process else 'the JVM'} ({len(targets)}); all exited{left}"


def measure(operations: Operations, operation: str, kind: str, expected: dict, args) -> Tally:
    operations.prepare(operation)
    url, token = operations.front()
    with Load(url, token, operations.model, expected, args.clients, kind, args.timeout) as load:
        time.sleep(args.lead)
        start = time.monotonic()
        load.mark()
        did = operations.run(operation)
        seconds = time.monotonic() - start
        time.sleep(args.tail)
    tally = load.tally
    tally.operation, tally.seconds, tally.did = operation, seconds, did
    print(tally.row(), flush=True)
    return tally


HEADER = (
    "| Operation | Clients | Took (s) | Sent | 200 | Retried (failed attempts) | Failed | In flight at the start |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"
)


def run(args) -> list[Tally]:
    """Every operation asked for, with every kind of client asked for, on private servers."""
    tallies: list[Tally] = []
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ops-under-load-")))
        store = workdir / "model_store"
        spec = archive.resolve_spec(args.model)
        with contextlib.redirect_stdout(io.StringIO()):
            archive.build(spec, store)
        expected = expected_forecasts(spec.checkpoint, inputs(workdir / "inputs"))
        print(
            f"{args.clients} clients, {len(expected)} inputs, model {args.model}; {args.lead:g} s before and "
            f"{args.tail:g} s after each operation\n{HEADER}",
            flush=True,
        )
        ongoing = [op for op in args.ops if op not in STOPPING]
        if ongoing:
            with start_torchserve(workdir / "server", store, [args.model]) as server, contextlib.ExitStack() as held:
                operations = Operations(server, args.model, spec.checkpoint, held)
                for kind in args.kinds:
                    tallies += [measure(operations, op, kind, expected, args) for op in ongoing]
        for n, op in enumerate(op for op in args.ops if op in STOPPING):
            with (
                start_torchserve(workdir / f"server-{n}-{op}", store, [args.model]) as server,
                contextlib.ExitStack() as held,
            ):
                tallies.append(
                    measure(Operations(server, args.model, spec.checkpoint, held), op, "raw", expected, args)
                )
    return tallies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="client threads (1..16, default 8)")
    parser.add_argument("--lead", type=float, default=2.0, help="seconds of load before each operation")
    parser.add_argument("--tail", type=float, default=2.0, help="seconds of load after each operation")
    parser.add_argument("--ops", default=",".join(OPERATIONS), help=f"comma-separated, of {', '.join(OPERATIONS)}")
    parser.add_argument("--kinds", default=",".join(KINDS), help="raw, bulk or both (default both)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a client waits for an answer")
    parser.add_argument("--model", default=None, help="default: the first model of config.properties' load_models")
    parser.add_argument("--workdir", type=Path, help="where the servers live (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    args.ops, args.kinds = args.ops.split(","), args.kinds.split(",")
    if not 1 <= args.clients <= 16 or not (0 <= args.lead <= 30 and 0 <= args.tail <= 30 and 0 < args.timeout <= 60):
        parser.error("--clients must be 1..16, --lead and --tail 0..30, --timeout 0..60")
    if set(args.ops) - set(OPERATIONS) or set(args.kinds) - set(KINDS):
        parser.error(f"--ops: {', '.join(OPERATIONS)}; --kinds: {', '.join(KINDS)}")
    args.model = args.model or serve_config.load_models()[0]
    tallies = run(args)
    if args.json:
        args.json.write_text(json.dumps([t.to_json() for t in tallies], indent=2) + "\n")
    lost = sum(sum(t.failed.values()) for t in tallies if t.clients == "bulk")
    print(f"bulk clients lost {lost} forecast(s)" if "bulk" in args.kinds else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
