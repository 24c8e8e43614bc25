"""Start and stop a private TorchServe, and wait until one is ready.

`start_torchserve` runs a TorchServe for the length of a ``with`` block (the tests' session
server, the soak run, the benchmarks): free loopback ports (gRPC included), its own working,
temp and log directories (key_file.json lands in the working directory), the repository's
config.properties rendered with those ports and the given model store. The block starts when
every worker of the models loaded at start is READY (management API, not /ping) and yields a
`TorchServe`; at the end ``torchserve --stop`` runs and every process of the server (launcher,
JVM, workers) must be gone (a leftover is killed and reported). `alm_ops.gateway` puts the
pod's token gateway (docker/token_gateway.py, as a process) in front of such a server.

    python -m alm_ops.launcher wait-ready RUN_DIR MODEL ... [--timeout S] [--started EPOCH] [--front URL]

waits for the server that scripts/serve.sh started in RUN_DIR (its config.properties,
key_file.json and tmp/.model_server.pid are there) until every worker of the models is READY,
writes an example window for the first model and prints how to use the server; exit status 1
with the server's own output when it exited or is not ready in time. With ``--front``, the
front's model list must answer too.

    python -m alm_ops.launcher start-front RUN_DIR [--listen 127.0.0.1:8090]
    python -m alm_ops.launcher stop-front RUN_DIR

start (in the background, its own session) and stop the front of scripts/serve.sh:
docker/token_gateway.py in pass-through mode in front of the TorchServe of RUN_DIR (addresses
from its config.properties, the management key from its key_file.json), KServe's time-series
routes on loopback; its process id in RUN_DIR/gateway.pid, its log in RUN_DIR/logs/gateway.log.
``stop-front`` sends SIGTERM (the front drains) and returns once the process is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import requests

from alm_ops import archive, serve_config
from alm_ops.api import ApiError, TorchServeApi, custom_metadata
from alm_ops.keys import KINDS, KeyFileError, Token, read_key, read_keys

ROOT = Path(__file__).resolve().parent.parent
TORCHSERVE = str(Path(sys.executable).with_name("torchserve"))
#: Seconds allowed from launch to every worker READY (a few seconds normally; CI shares 2 cores).
READY_TIMEOUT = 120
STOP_TIMEOUT = 60


class TorchServe(TorchServeApi):
    """A TorchServe started by `start_torchserve`: its APIs (`TorchServeApi`), keys, directories
    and processes, and the models it can be asked to serve (`ensure_model`)."""

    def __init__(
        self,
        inference_url: str,
        management_url: str,
        metrics_url: str,
        workdir: Path,
        model_store: Path,
        launcher: subprocess.Popen | None = None,
    ) -> None:
        super().__init__(inference_url, management_url, metrics_url)
        self.workdir, self.model_store, self.log_dir = workdir, model_store, workdir / "logs"
        self.launcher = launcher
        self.start_to_ready_s = 0.0
        #: model name -> checkpoint it was archived from
        self.checkpoints: dict[str, Path] = {}
        #: model name -> function writing its checkpoint to the given path (models made on demand)
        self.checkpoint_makers: dict[str, Callable[[Path], Path]] = {}

    @property
    def keys(self) -> dict[str, str]:
        """The keys (``inference``, ``management``, ``API``) as last read from key_file.json."""
        return {kind: token.value for kind, token in self.tokens.items()}

    def reload_keys(self, timeout: float = READY_TIMEOUT) -> dict[str, str]:
        """Read key_file.json (again, after a rotation); at start, wait until the server wrote it."""
        key_file = self.workdir / "key_file.json"
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                keys = read_keys(key_file, KINDS)
            except KeyFileError:  # not written yet, or half written
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no key_file.json after {timeout} s\n{self.log_tail()}") from None
                time.sleep(0.1)
                continue
            self.tokens.update({kind: Token(key, key_file, kind) for kind, key in keys.items()})
            return keys

    def check_alive(self) -> None:
        if self.launcher is not None and self.launcher.poll() is not None:
            raise RuntimeError(f"TorchServe exited with status {self.launcher.returncode}\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for name in ("torchserve.out", "logs/ts_log.log", "logs/model_log.log"):
            path = self.workdir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def wait_ready(
        self, model: str, version: str | None = None, count: int | None = None, timeout: float = READY_TIMEOUT
    ) -> list[dict]:
        """Poll the management API until the model's workers (``count`` of them) are all READY."""

        def ready():
            self.check_alive()
            workers = self.workers(model, version)
            done = workers and all(w["status"] == "READY" for w in workers)
            return (workers if done and (count is None or len(workers) == count) else None), workers

        try:
            return self.wait(ready, f"{model} {version or ''}".strip(), timeout, interval=0.1)
        except ApiError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    def checkpoint(self, name: str) -> Path:
        """The checkpoint of a model, written on first use from `checkpoint_makers`."""
        if name not in self.checkpoints:
            directory = self.workdir / "checkpoints"
            directory.mkdir(exist_ok=True)
            self.checkpoints[name] = self.checkpoint_makers[name](directory / f"{name}.pt")
        return self.checkpoints[name]

    def ensure_model(self, name: str, timeout: float = READY_TIMEOUT) -> list[dict]:
        """Make sure ``name`` is served: build its archive from `checkpoint` if the store lacks it,
        register it asynchronously, wait until its workers are READY."""
        if self.manage("GET", f"/models/{name}").ok:
            return self.wait_ready(name, timeout=timeout)
        mar = self.model_store / f"{name}.mar"
        if not mar.exists():
            archive.build(archive.resolve_spec(name, self.checkpoint(name)), self.model_store)
        self.register(mar.name, initial_workers=1)
        return self.wait_ready(name, timeout=timeout)

    def processes(self) -> list[psutil.Process]:
        """The launcher and everything under it (the JVM and its Python workers)."""
        if self.launcher is None:
            return []
        try:
            parent = psutil.Process(self.launcher.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def free_ports(count: int) -> list[int]:
    """Loopback ports free right now (held open together so that they differ)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def server_env(workdir: Path) -> dict[str, str]:
    """The server's environment: its own temp and log directories, no PYTHONPATH (the archives
    must be self-contained: the workers may only find alm_forecaster inside the archive)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ALM_FORECASTER_DEVICE")}
    env.update(
        TMPDIR=str(workdir / "tmp"),
        TEMP=str(workdir / "tmp"),
        LOG_LOCATION=str(workdir / "logs"),
        METRICS_LOCATION=str(workdir / "logs"),
    )
    return env


@contextlib.contextmanager
def start_torchserve(
    workdir: Path, model_store: Path, load_models: list[str], overrides: dict[str, str] | None = None
) -> Iterator[TorchServe]:
    """Run TorchServe in ``workdir`` on free ports until the block ends; nothing survives it.

    ``load_models`` are archive names in ``model_store`` (without .mar); the block starts when
    all their workers are READY. ``overrides``: config.properties settings for this server.
    """
    for sub in ("tmp", "logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    ports = free_ports(5)
    urls = [f"http://127.0.0.1:{port}" for port in ports[:3]]
    settings = {
        "inference_address": urls[0],
        "management_address": urls[1],
        "metrics_address": urls[2],
        # gRPC cannot be switched off in 0.12: give it free ports too (7070/7071 may be taken).
        "grpc_inference_port": str(ports[3]),
        "grpc_management_port": str(ports[4]),
        "load_models": ",".join(f"{name}.mar" for name in load_models),
        **(overrides or {}),
    }
    config = workdir / "config.properties"
    config.write_text(serve_config.render(model_store, settings))
    env = server_env(workdir)
    start = time.monotonic()
    with open(workdir / "torchserve.out", "wb") as out:
        # Output to a file, never a pipe: the JVM inherits it and would hang a reader.
        launcher = subprocess.Popen(
            [TORCHSERVE, "--start", "--foreground", "--ncs", "--ts-config", str(config)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = TorchServe(urls[0], urls[1], urls[2], workdir, model_store, launcher=launcher)
    try:
        server.reload_keys()
        for name in load_models:  # archives started here are named after their model
            server.wait_ready(name)
        server.start_to_ready_s = time.monotonic() - start
        yield server
    finally:
        problems = stop_torchserve(server, env)
        if problems:
            raise RuntimeError("TorchServe did not stop cleanly: " + "; ".join(problems))


def stop_torchserve(server: TorchServe, env: dict[str, str]) -> list[str]:
    """``torchserve --stop``, then wait for every process of the server; returns what went wrong."""
    problems = []
    crashed = server.launcher is not None and server.launcher.poll() is not None
    processes = server.processes()
    subprocess.run(
        [TORCHSERVE, "--stop"],
        cwd=server.workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        timeout=STOP_TIMEOUT,
        check=False,
    )
    _, alive = psutil.wait_procs(processes, timeout=STOP_TIMEOUT)
    if alive:
        problems.append(f"processes left after --stop: {[p.pid for p in alive]} (killed)")
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
    if server.launcher is not None:
        try:
            server.launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.launcher.kill()
            problems.append("launcher did not exit")
    key_file = server.workdir / "key_file.json"
    if key_file.exists():  # --stop deletes it; a server that died on its own leaves it
        key_file.unlink()
        if not crashed:
            problems.append("key_file.json left behind by --stop")
    return problems


# -- the server of scripts/serve.sh ----------------------------------------------------------------


class StartFailed(Exception):
    """The server of scripts/serve.sh exited while starting or was not ready in time."""


def wait_until_ready(run_dir: Path, models: list[str], timeout: float) -> TorchServeApi:
    """Wait until every worker of ``models`` is READY on the server that scripts/serve.sh started
    in ``run_dir``; `StartFailed` when it exits first or the time is up."""
    props = serve_config.read_properties(run_dir / "config.properties")
    api = TorchServeApi(*(props[f"{kind}_address"] for kind in ("inference", "management", "metrics")), timeout=5)
    key_file = run_dir / "key_file.json"
    deadline = time.monotonic() + timeout
    status = {model: "not registered yet" for model in models}
    while time.monotonic() < deadline:
        time.sleep(0.25)
        if not _serve_pid_alive(run_dir / "tmp" / ".model_server.pid"):
            raise StartFailed("TorchServe exited while starting (a port in use? see below)")
        if not api.tokens:
            try:  # written by the server once it runs
                api.tokens = {kind: Token(read_key(key_file, kind), key_file, kind) for kind in KINDS[:2]}
            except KeyFileError:
                continue
        for model in models:
            try:
                status[model] = ",".join(w["status"] for w in api.workers(model)) or "no workers"
            except ApiError as exc:
                status[model] = str(exc)
        if all(set(s.split(",")) == {"READY"} for s in status.values()):
            return api
    raise StartFailed(f"workers not READY after {timeout:.0f} s: {status}")


def _serve_pid_alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def write_example(api: TorchServeApi, model: str, out: Path) -> dict:
    """A ready-to-send request for ``model`` (deterministic pseudo-random numbers: its forecasts
    mean nothing): daily prices (Date, Close) for a model that takes prices, else a window of
    embeddings of its own input size and length; returns the model's own description."""
    meta = custom_metadata(api.describe(model, customized=True))
    if "prices" in (meta.get("accepts") or []):
        out.write_text(_example_prices(meta["rows_needed"]))
        return meta
    width, rows = meta["config"]["input_size"], meta["seq_len"]
    state, lines, price = 12345, [",".join([f"emb_{i}" for i in range(width)] + ["last_price"])], 100.0
    for _ in range(rows):
        cells = []
        for _ in range(width):
            state = (1103515245 * state + 12345) % 2**31
            cells.append(f"{state / 2**30 - 1:.6f}")
        price *= 1.0 + (state % 2001 - 1000) / 100000
        lines.append(",".join(cells + [f"{price:.4f}"]))
    out.write_text("\n".join(lines) + "\n")
    return meta


def _example_prices(rows: int) -> str:
    """``rows`` business days of a random walk (1% daily moves) from 100."""
    days = np.busday_offset("2024-01-01", np.arange(rows), roll="forward")
    rng = np.random.default_rng(12345)
    closes = 100.0 * np.exp(np.cumsum(0.01 * rng.standard_normal(rows)))
    return "Date,Close\n" + "".join(f"{d},{c:.4f}\n" for d, c in zip(days, closes, strict=True))


def check_front(api: TorchServeApi, front: str) -> list[str]:
    """The front's KServe model list, asked with the inference key: the names (as TorchServe's
    own list) or ApiError."""
    response = requests.get(f"{front}/v1/timeseries/models", headers=api.auth(), timeout=api.timeout)
    names = response.json() if response.status_code == 200 else None
    if names != api.model_names():
        raise ApiError(f"the front {front} answered HTTP {response.status_code} {response.text[:200]}")
    return names


def usage(
    api: TorchServeApi,
    run_dir: Path,
    models: list[str],
    elapsed: float,
    example: Path,
    meta: dict,
    front: str | None = None,
) -> str:
    """What scripts/serve.sh prints once the server is ready: addresses, tokens, curl commands."""
    keys, logs, model, names = run_dir / "key_file.json", run_dir / "logs", models[0], ", ".join(models)
    inference, management, metrics = api.inference_url, api.management_url, api.metrics_url
    accepts = " or ".join(meta.get("accepts") or ["embeddings"])
    return f"""
TorchServe is up: {names} READY in {elapsed:.1f} s.
  inference   {inference}/predictions/<model>      (models: {names})
  management  {management}/models
  metrics     {metrics}/metrics                     (Prometheus, no token){kserve_line(front)}
Tokens (Authorization: Bearer <key>) are in {keys}:
  INF=$(python3 -c "import json;print(json.load(open('{keys}'))['inference']['key'])")
  MGT=$(python3 -c "import json;print(json.load(open('{keys}'))['management']['key'])")
Forecast ({model} takes CSVs of {accepts}; an example window for it: {example}):
  curl -H "Authorization: Bearer $INF" -F data=@{example} {inference}/predictions/{model}
  curl -H "Authorization: Bearer $INF" -H 'Content-Type: text/csv' --data-binary @{example} \\
       {inference}/predictions/{model}{kserve_example(front)}
Logs: {logs}    Stop: scripts/stop.sh"""


def kserve_line(front: str | None) -> str:
    if not front:
        return ""
    return f"""
  KServe      {front}/v1/timeseries/forecast, {front}/v1/timeseries/models   (the inference key)"""


def kserve_example(front: str | None) -> str:
    if not front:
        return ""
    return f"""
KServe's time-series protocol (a JSON ForecastRequest; its "model" picks the model):
  curl -H "Authorization: Bearer $INF" {front}/v1/timeseries/models"""


def start_failure(run_dir: Path, why: str) -> str:
    """Why the server of scripts/serve.sh is not up: the cause lines of its output, its logs' tails."""
    lines = [f"error: {why}"]
    out = run_dir / "torchserve.out"
    text = out.read_text(errors="replace").splitlines() if out.exists() else []
    signs = ("Failed to bind", "Address already in use", "Exception:")
    causes = [line for line in text if any(sign in line for sign in signs)]
    if causes:
        lines.append("cause:\n  " + "\n  ".join(dict.fromkeys(causes[:5])))
    for log in (out, run_dir / "logs" / "ts_log.log", run_dir / "logs" / "model_log.log"):
        if log.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            lines.append(f"--- last lines of {log} ---\n{tail}")
    lines.append("Stop what started with scripts/stop.sh.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from alm_ops.gateway import FRONT_LISTEN, start_front, stop_front  # gateway.py builds on this module

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    wait = sub.add_parser("wait-ready", help="wait for the server of scripts/serve.sh, then say how to use it")
    wait.add_argument("run_dir", type=Path, help="its working directory (.serve/)")
    wait.add_argument("models", nargs="+", help="models whose workers must all be READY")
    wait.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    wait.add_argument("--started", type=float, help="when it was launched (epoch seconds), for the time to READY")
    wait.add_argument("--front", help="the URL of the front (start-front): its model list must answer too")
    start = sub.add_parser("start-front", help="start the KServe front of scripts/serve.sh (pass-through gateway)")
    start.add_argument("run_dir", type=Path, help="the server's working directory (.serve/)")
    start.add_argument("--listen", default=FRONT_LISTEN, help=f"HOST:PORT (default {FRONT_LISTEN})")
    stop = sub.add_parser("stop-front", help="stop the front of scripts/serve.sh (it drains first)")
    stop.add_argument("run_dir", type=Path, help="the server's working directory (.serve/)")
    args = parser.parse_args(argv)
    if args.command == "start-front":
        try:
            pid = start_front(args.run_dir, args.listen)
        except (RuntimeError, OSError, KeyError) as exc:
            print(f"error: the front did not start: {exc}\nStop what started with scripts/stop.sh.", file=sys.stderr)
            return 1
        print(f"KServe front (docker/token_gateway.py --pass-through, pid {pid}) on {args.listen}")
        return 0
    if args.command == "stop-front":
        pid = stop_front(args.run_dir)
        print("KServe front: not running." if pid is None else f"KServe front stopped (pid {pid} gone).")
        return 0
    started = args.started if args.started is not None else time.time()
    try:
        api = wait_until_ready(args.run_dir, args.models, args.timeout)
        example = args.run_dir / f"example_{args.models[0]}.csv"
        api.timeout = 30  # the handler describes itself: slower than the readiness polls
        meta = write_example(api, args.models[0], example)
        if args.front:
            check_front(api, args.front)
    except (StartFailed, ApiError, requests.RequestException, ValueError) as exc:
        print(start_failure(args.run_dir, str(exc)), file=sys.stderr)
        return 1
    print(usage(api, args.run_dir, args.models, time.time() - started, example, meta, args.front))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
