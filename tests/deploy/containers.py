"""A container engine for the image and fresh-machine tests: podman (Debian's package) or docker.

`engine()` finds one, or skips the test with the install line; with ``ALM_REQUIRE_TOOLS=1``
(set by .ci/run) a missing engine fails instead, so CI never passes with these tests silently
skipped (tests/helpers.py's `unavailable`, the one rule for every missing tool). The flags
podman needs on a host where root lacks CAP_SYS_RESOURCE (explicit ulimits) or has hybrid
cgroups (the runc runtime) are set here, the same way scripts/build_image.sh sets them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.conftest import ROOT
from tests.helpers import unavailable

ULIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=20000:20000")


@dataclass
class Engine:
    """The engine's command line (program plus global flags) and its name."""

    argv: list[str]
    name: str

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run the engine with ``args``; ``stdin`` is written to its standard input (``exec -i``)."""
        done = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and done.returncode != 0:
            what = " ".join(args[:3])
            raise AssertionError(f"{self.name} {what}... failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done

    @property
    def run_flags(self) -> tuple[str, ...]:
        return ULIMITS if self.name == "podman" else ()

    def healthy(self, container: str) -> tuple[bool, str]:
        """Run the image's own HEALTHCHECK once: (healthy, what it printed).

        podman without systemd runs no health timer: ``podman healthcheck run`` runs it now.
        docker runs it on its timer: its last result is read.
        """
        if self.name == "podman":
            done = self("healthcheck", "run", container, check=False, timeout=60)
            return done.returncode == 0, (done.stdout + done.stderr).strip()
        done = self("inspect", "--format", "{{json .State.Health}}", container, check=False)
        return '"Status":"healthy"' in done.stdout, done.stdout.strip()[-500:]

    def wait_healthy(self, container: str, timeout: float) -> float:
        """Seconds until the health check passes; fails with the container's log otherwise."""
        started = time.monotonic()
        said = ""
        while time.monotonic() - started < timeout:
            state = self("inspect", "--format", "{{.State.Status}}", container, check=False).stdout.strip()
            if state not in ("created", "running"):
                break
            ok, said = self.healthy(container)
            if ok:
                return time.monotonic() - started
            time.sleep(1)
        logs = self("logs", "--tail", "60", container, check=False)
        raise AssertionError(f"{container} not healthy after {timeout:.0f} s ({said}):\n{logs.stdout}{logs.stderr}")

    def remove(self, container: str) -> None:
        self("rm", "-f", "-t", "0", container, check=False, timeout=60)


def engine() -> Engine:
    """The engine to use, or `unavailable` (skip; fail under ALM_REQUIRE_TOOLS=1) with what to install."""
    forced = os.environ.get("CONTAINER_ENGINE")
    path = forced or shutil.which("podman") or shutil.which("docker")
    why = None
    if not path:
        why = "no container engine (apt-get install podman runc mmdebstrap; scripts/setup_env.sh --dev does)"
    elif os.path.basename(path) == "docker" and subprocess.run([path, "info"], capture_output=True).returncode != 0:
        why = "docker is installed but no daemon answers (or install podman: apt-get install podman runc)"
    if why:
        unavailable(why)
    name = os.path.basename(path)
    argv = [path]
    if name == "podman" and shutil.which("runc"):
        argv += ["--runtime", "runc"]  # crun refuses hybrid cgroups
    return Engine(argv, name)


def unique_name(prefix: str) -> str:
    """A container or image name no other run uses."""
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def offline_forecast(csv: Path, model: str = "sp500_xlstm") -> dict:
    """What the offline CLI (scripts/forecast.py) answers for ``csv`` with models/<model>.pt."""
    command = [sys.executable, "scripts/forecast.py", "--checkpoint", f"models/{model}.pt", "--name", model, str(csv)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[0])
