"""Shared fixtures, above all a real TorchServe for the server tests.

``torchserve`` (session scope) starts ONE TorchServe for the whole session, on free loopback
ports, in its own directory (TMPDIR, TEMP, LOG_LOCATION and the working directory, where
key_file.json lands), with its own model store holding archives built by
scripts/build_archive.py from

* ``tiny``: a small deterministic checkpoint (input 8, hidden 16; fast to load and run), whose
  config declares ``output_size: 1`` to exercise the known config/weights disagreement;
  loaded at start;
* ``seed_untrained``: the full-size untrained seed checkpoint (the current default model),
  with archive_configs/seed_untrained.yaml; built, registered and loaded on first
  ``torchserve.ensure_model("seed_untrained")``, so a session that does not need it does
  not pay for it.

It waits until the workers are READY (management API, not /ping), yields a
`TorchServeClient` and at the end stops the server with ``torchserve --stop`` and waits for
the launcher, the JVM and every worker process to be gone (a leftover is killed and reported
as an error). Other test modules can use the fixture as is, or `start_torchserve` for a
server of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from alm_forecaster.config import ModelConfig  # noqa: E402
from alm_forecaster.testing.synthetic import TINY, write_checkpoint  # noqa: E402
from scripts import build_archive, serve_config  # noqa: E402

TORCHSERVE = str(Path(sys.executable).with_name("torchserve"))
#: Seconds allowed from launch to every worker READY (a few seconds normally; CI shares 2 cores).
READY_TIMEOUT = 120
STOP_TIMEOUT = 60
SEED = ModelConfig()  # the platform's full size: input 128, hidden 256, 3 layers, 7 blocks, 5 steps


@dataclass
class TorchServeClient:
    """Where a running TorchServe listens, its tokens, and a few helpers for tests."""

    inference_url: str
    management_url: str
    metrics_url: str
    keys: dict[str, str]
    workdir: Path
    model_store: Path
    log_dir: Path
    #: model name -> checkpoint it was archived from
    checkpoints: dict[str, Path] = field(default_factory=dict)
    #: model name -> function writing its checkpoint to the given path (models made on demand)
    checkpoint_makers: dict[str, Callable[[Path], Path]] = field(default_factory=dict)
    launcher: subprocess.Popen | None = None
    start_to_ready_s: float = 0.0

    def checkpoint(self, name: str) -> Path:
        """The checkpoint of a model, written on first use from `checkpoint_makers`."""
        if name not in self.checkpoints:
            directory = self.workdir / "checkpoints"
            directory.mkdir(exist_ok=True)
            self.checkpoints[name] = self.checkpoint_makers[name](directory / f"{name}.pt")
        return self.checkpoints[name]

    def ensure_model(self, name: str, timeout: float = READY_TIMEOUT) -> list[dict]:
        """Make sure ``name`` is served: build its archive (scripts/build_archive.py) if the
        store lacks it, register it asynchronously, wait until its workers are READY."""
        if self.manage("GET", f"/models/{name}").ok:
            return self.wait_ready(name, timeout=timeout)
        archive = self.model_store / f"{name}.mar"
        if not archive.exists():
            built = build_archive.main(
                [str(self.checkpoint(name)), "--name", name, "--export-path", str(self.model_store)]
            )
            if built != 0:
                raise RuntimeError(f"build_archive failed for {name}")
        params = {"url": archive.name, "synchronous": "false", "initial_workers": 1}
        response = self.manage("POST", "/models", params=params)
        if response.status_code != 202:
            raise RuntimeError(f"registering {archive.name}: {response.status_code} {response.text}")
        return self.wait_ready(name, timeout=timeout)

    def auth(self, kind: str = "inference") -> dict[str, str]:
        """``Authorization`` header with the ``inference``, ``management`` or ``API`` key."""
        return {"Authorization": f"Bearer {self.keys[kind]}"}

    def predict(self, model: str, version: str | None = None, headers: dict | None = None, **kwargs):
        """POST /predictions/<model>[/<version>] with the inference token (``requests`` kwargs)."""
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        return requests.post(
            self.inference_url + path, headers={**self.auth(), **(headers or {})}, timeout=60, **kwargs
        )

    def manage(self, method: str, path: str, **kwargs) -> requests.Response:
        """A management API call with the management token."""
        headers = {**self.auth("management"), **kwargs.pop("headers", {})}
        return requests.request(method, self.management_url + path, headers=headers, timeout=60, **kwargs)

    def describe(self, model: str, version: str | None = None, customized: bool = False) -> dict:
        path = f"/models/{model}" + (f"/{version}" if version else "")
        response = self.manage("GET", path, params={"customized": "true"} if customized else None)
        response.raise_for_status()
        return response.json()[0]

    def workers(self, model: str, version: str | None = None) -> list[dict]:
        return self.describe(model, version)["workers"]

    def wait_ready(
        self, model: str, version: str | None = None, count: int | None = None, timeout: float = READY_TIMEOUT
    ) -> list[dict]:
        """Poll the management API until the model's workers (``count`` of them) are all READY."""
        deadline = time.monotonic() + timeout
        workers: list[dict] | str = "not registered"
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                response = self.manage("GET", f"/models/{model}" + (f"/{version}" if version else ""))
            except requests.ConnectionError:  # key_file.json is written before the ports are bound
                time.sleep(0.1)
                continue
            if response.ok:
                workers = response.json()[0]["workers"]
                ready = workers and all(w["status"] == "READY" for w in workers)
                if ready and (count is None or len(workers) == count):
                    return workers
            time.sleep(0.1)
        raise TimeoutError(f"{model} {version or ''}: not READY after {timeout} s: {workers}\n{self.log_tail()}")

    def metrics(self) -> str:
        return requests.get(self.metrics_url + "/metrics", timeout=30).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus metric's samples whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics().splitlines():
            match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
            if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
                total += float(match.group(2))
        return total

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

    def processes(self) -> list[psutil.Process]:
        """The launcher and everything under it (the JVM and its Python workers)."""
        if self.launcher is None:
            return []
        try:
            parent = psutil.Process(self.launcher.pid)
            return [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []


def build_archive_cli(checkpoint: Path, name: str, store: Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """scripts/build_archive.py run as a command, as an operator would: exit status and stderr."""
    command = [sys.executable, str(ROOT / "scripts" / "build_archive.py"), str(checkpoint), "--name", name]
    return subprocess.run([*command, "--export-path", str(store)], capture_output=True, text=True, timeout=300, cwd=cwd)


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
) -> Iterator[TorchServeClient]:
    """Run TorchServe in ``workdir`` on free ports until the block ends; nothing survives it.

    ``load_models`` are archive names in ``model_store`` (without .mar); the block starts when
    all their workers are READY.
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
    client = TorchServeClient(urls[0], urls[1], urls[2], {}, workdir, model_store, workdir / "logs", launcher=launcher)
    try:
        client.keys = _read_keys(client)
        for name in load_models:  # archives started here are named after their model
            client.wait_ready(name)
        client.start_to_ready_s = time.monotonic() - start
        yield client
    finally:
        problems = stop_torchserve(client, env)
        if problems:
            raise RuntimeError("TorchServe did not stop cleanly: " + "; ".join(problems))


def _read_keys(client: TorchServeClient) -> dict[str, str]:
    key_file = client.workdir / "key_file.json"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        client.check_alive()
        if key_file.exists():
            with contextlib.suppress(ValueError):
                data = json.loads(key_file.read_text())
                return {kind: data[kind]["key"] for kind in ("inference", "management", "API")}
        time.sleep(0.1)
    raise TimeoutError(f"no key_file.json after {READY_TIMEOUT} s\n{client.log_tail()}")


def stop_torchserve(client: TorchServeClient, env: dict[str, str]) -> list[str]:
    """``torchserve --stop``, then wait for every process of the server; returns what went wrong."""
    problems = []
    crashed = client.launcher is not None and client.launcher.poll() is not None
    processes = client.processes()
    subprocess.run(
        [TORCHSERVE, "--stop"],
        cwd=client.workdir,
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
    if client.launcher is not None:
        try:
            client.launcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            client.launcher.kill()
            problems.append("launcher did not exit")
    key_file = client.workdir / "key_file.json"
    if key_file.exists():  # --stop deletes it; a server that died on its own leaves it
        key_file.unlink()
        if not crashed:
            problems.append("key_file.json left behind by --stop")
    return problems


#: The session server's models: how to write each checkpoint. ``tiny`` is loaded at start;
#: the full-size ``seed_untrained`` (slower to build and load) only when a test asks for it.
SESSION_MODELS: dict[str, Callable[[Path], Path]] = {
    "tiny": lambda path: write_checkpoint(path, TINY, seed=7, declared_output_size=1),
    "seed_untrained": lambda path: write_checkpoint(path, SEED, seed=0),
}


@pytest.fixture(scope="session")
def torchserve(tmp_path_factory) -> Iterator[TorchServeClient]:
    """One real TorchServe for the session, serving ``tiny`` (input 8, hidden 16) from the
    start; ``torchserve.ensure_model("seed_untrained")`` adds the full-size seed."""
    workdir = tmp_path_factory.mktemp("torchserve")
    store = workdir / "model_store"
    maker = TorchServeClient("", "", "", {}, workdir, store, workdir / "logs", checkpoint_makers=SESSION_MODELS)
    tiny = maker.checkpoint("tiny")
    if build_archive.main([str(tiny), "--name", "tiny", "--export-path", str(store)]) != 0:
        pytest.fail("build_archive failed for tiny")
    try:
        with start_torchserve(workdir, store, ["tiny"]) as client:
            client.checkpoints, client.checkpoint_makers = maker.checkpoints, SESSION_MODELS
            print(f"\nTorchServe ready in {client.start_to_ready_s:.1f} s ({client.inference_url})")
            yield client
    finally:
        # Keep the logs for a post-mortem; drop the bulky checkpoints, archives and unpacked models.
        for bulky in (store, workdir / "tmp", workdir / "checkpoints"):
            shutil.rmtree(bulky, ignore_errors=True)
