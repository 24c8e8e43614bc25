"""The token gateway (docker/token_gateway.py) as a process beside a TorchServe.

* `start_gateway`: the pod's gateway (client tokens from a file) in front of a `TorchServe` of
  `launcher.start_torchserve`, for the length of a ``with`` block (tests, ops_under_load);
* `start_front` / `stop_front`: the front of scripts/serve.sh, the same program in pass-through
  mode (the client's own token goes to TorchServe), serving KServe's time-series routes on
  loopback; `python -m alm_ops.launcher start-front|stop-front RUN_DIR` runs them.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from alm_ops import serve_config
from alm_ops.launcher import ROOT, STOP_TIMEOUT, TorchServe, free_ports


class Gateway:
    """docker/token_gateway.py running in front of a `TorchServe` (as in a Kubernetes pod)."""

    def __init__(self, url: str, token: str, process: subprocess.Popen, log: Path) -> None:
        self.url, self.token, self.process, self.log = url, token, process, log


GATEWAY = ROOT / "docker" / "token_gateway.py"
#: Seconds a gateway has to start listening, and to drain and exit after SIGTERM (its drain: 30 s).
GATEWAY_START_TIMEOUT, GATEWAY_STOP_TIMEOUT = 30, 45


def gateway_command(listen: str, run_dir: Path, inference: str, management: str, token_file: Path | None) -> list[str]:
    """docker/token_gateway.py's command line: client tokens from ``token_file``, or pass-through."""
    mode = ["--pass-through"] if token_file is None else ["--token-file", str(token_file)]
    urls = ["--inference", inference, "--management", management]
    return [sys.executable, str(GATEWAY), "--listen", listen, *mode, "--run-dir", str(run_dir), *urls]


def wait_listening(host: str, port: int, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until ``host:port`` accepts connections; RuntimeError (with the log) when the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the gateway did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)


@contextlib.contextmanager
def start_gateway(server: TorchServe, workdir: Path, token: str = "gateway-client-token") -> Iterator[Gateway]:
    """The pod's token gateway on a free loopback port, forwarding to ``server`` with its key
    file, clients showing ``token``; stopped (SIGTERM: it drains) at the end of the block if it
    is still running."""
    workdir.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "token"
    token_file.write_text(token + "\n")
    port = free_ports(1)[0]
    command = gateway_command(
        f"127.0.0.1:{port}", server.workdir, server.inference_url, server.management_url, token_file
    )
    log = workdir / "gateway.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_listening("127.0.0.1", port, process, log, GATEWAY_START_TIMEOUT)
        yield Gateway(f"http://127.0.0.1:{port}", token, process, log)
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# -- the front of scripts/serve.sh ----------------------------------------------------------------

FRONT_LISTEN = "127.0.0.1:8090"


def front_pid(run_dir: Path) -> int | None:
    """The process id of the front started in ``run_dir`` while it runs (checked to be
    docker/token_gateway.py: a pid file outliving its process may name another one), else None."""
    try:
        pid = int((run_dir / "gateway.pid").read_text())
        process = psutil.Process(pid)
        running = process.status() != psutil.STATUS_ZOMBIE and str(GATEWAY) in process.cmdline()
    except (OSError, ValueError, psutil.Error):
        return None
    return pid if running else None


def start_front(run_dir: Path, listen: str = FRONT_LISTEN) -> int:
    """Start the pass-through front in front of the TorchServe of ``run_dir`` (see the module's
    docstring); returns its process id once it listens."""
    if front_pid(run_dir) is not None:
        raise RuntimeError(f"a front is already running (pid {front_pid(run_dir)}): stop it first")
    props = serve_config.read_properties(run_dir / "config.properties")
    command = gateway_command(listen, run_dir, props["inference_address"], props["management_address"], None)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    log = run_dir / "logs" / "gateway.log"
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    (run_dir / "gateway.pid").write_text(f"{process.pid}\n")
    host, _, port = listen.rpartition(":")
    try:
        wait_listening("127.0.0.1" if host in ("", "0.0.0.0") else host, int(port), process, log, GATEWAY_START_TIMEOUT)
    except RuntimeError:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        (run_dir / "gateway.pid").unlink(missing_ok=True)
        raise
    return process.pid


def stop_front(run_dir: Path, timeout: float = GATEWAY_STOP_TIMEOUT) -> int | None:
    """SIGTERM to the front of ``run_dir`` (it drains), wait until it is gone (killed after
    ``timeout`` seconds); returns its process id, None when none was running."""
    pid = front_pid(run_dir)
    if pid is not None:
        process = psutil.Process(pid)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        except psutil.NoSuchProcess:
            pass
    (run_dir / "gateway.pid").unlink(missing_ok=True)
    return pid
