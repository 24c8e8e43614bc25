"""The README's first command on a bare Debian machine, as a new user would run it.

A container from a minimal Debian 12 image (scripts/make_base_image.sh bare: python3, curl and
CA certificates; no Java, no venv module, no compiler, no ninja, no procps) gets a copy of the
checkout (the files git tracks or would track) and runs, as root, the README's set-up-and-serve
command exactly as written there, then the README's token line and curl example. The forecast
must equal the offline CLI's for the same file, the kernel must have been built (the set-up
installs what the build needs) and scripts/stop.sh must leave no process. This is the test that
catches the next missing install step: the commands are read from README.md, not copied here.

The only thing taken from the host is where pip finds the CPU build of torch (a local wheel
directory, as this machine's own pip has it; without one the test skips, and fails under
ALM_REQUIRE_TOOLS=1 as in CI); everything else comes from Debian's archive and PyPI inside the
container.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.deploy.containers import engine, offline_forecast, unique_name
from tests.helpers import ROOT, unavailable

BARE_IMAGE = "localhost/alm-bare-debian:bookworm"
WHEELS = Path("/wheels")
CHECKOUT = "/root/alm-forecaster"
README_TIMEOUT = 1500


def readme_commands() -> dict[str, str]:
    """The README's set-up-and-serve command, token line and first curl example, as written."""
    text = (ROOT / "README.md").read_text()
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]

    def first(predicate) -> str:
        line = next(line for line in lines if predicate(line))
        return re.sub(r"\s+#.*$", "", line).strip()  # the README's trailing comments

    return {
        "serve": first(lambda line: line.startswith("bash scripts/serve.sh")),
        "token": first(lambda line: line.startswith("INF=$(")),
        "forecast": first(lambda line: line.startswith("curl") and "-F data=@examples/sp500_tail.csv" in line),
    }


def checkout_copy(dest: Path) -> None:
    """The files a clone has (tracked, plus new files git would track): no venv, no builds."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    with tarfile.open(dest, "w") as tar:
        for name in filter(None, names):
            path = ROOT / name.decode()
            if path.exists():
                tar.add(path, arcname=name.decode(), recursive=False)


def local_torch_wheel_dir() -> Path | None:
    """The directory of a torch-2.13.0+cpu wheel in pip's find-links, as this machine's pip has it."""
    found = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"], capture_output=True, text=True
    )
    for entry in found.stdout.split():
        directory = Path(entry.removeprefix("file://"))
        if any(directory.glob("torch-2.13.0+cpu-*.whl")):
            return directory
    return None


def test_readme_first_command_on_a_bare_debian(tmp_path):
    eng = engine()
    wheels = local_torch_wheel_dir()
    if wheels is None:
        unavailable(
            "no torch-2.13.0+cpu wheel in pip's find-links (pip config get global.find-links): "
            "the container's pip would fetch the multi-GB CUDA build. Put the CPU wheel in a directory and name it "
            "there (pip config set global.find-links DIR)"
        )
    if eng("image", "inspect", BARE_IMAGE, check=False).returncode != 0:
        made = subprocess.run(
            ["bash", str(ROOT / "scripts" / "make_base_image.sh"), "bare", BARE_IMAGE],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert made.returncode == 0, made.stderr[-3000:]
    commands = readme_commands()
    archive = tmp_path / "checkout.tar"
    checkout_copy(archive)
    container = unique_name("alm-fresh-machine")
    script = " && ".join(
        [
            f"mkdir -p {CHECKOUT}",
            f"tar -xf /checkout.tar -C {CHECKOUT}",
            f"cd {CHECKOUT}",
            # What a new user of this machine has in pip's configuration: where the CPU torch is.
            f"export PIP_FIND_LINKS={WHEELS}",
            commands["serve"],
            commands["token"],
            'echo "FORECAST: $(' + commands["forecast"] + ')"',
            "bash scripts/stop.sh",
            # Nothing of the server may be left: no JVM, no Python worker (read from /proc: no procps).
            "! grep -Hx -e java -e 'python[0-9.]*' /proc/[0-9]*/comm",
        ]
    )
    started = time.monotonic()
    try:
        eng(
            "run",
            "-d",
            "--name",
            container,
            # An init as PID 1 reaps orphans, as on a real machine (TorchServe's launcher exits
            # after starting the JVM, whose parent then becomes PID 1).
            "--init",
            *eng.run_flags,
            "-v",
            f"{archive}:/checkout.tar:ro",
            "-v",
            f"{wheels}:{WHEELS}:ro",
            BARE_IMAGE,
            "sleep",
            "infinity",
        )
        done = eng("exec", container, "bash", "-c", script, check=False, timeout=README_TIMEOUT)
    finally:
        eng.remove(container)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    failed = f"the README's commands failed on a bare Debian (exit {done.returncode}):\n{output[-6000:]}"
    assert done.returncode == 0, failed
    print(f"\nbare Debian: README set-up + serve + forecast + stop in {elapsed:.0f} s")
    assert "TorchServe is up" in done.stdout
    assert "recurrence kernel was not built" not in output, "the set-up did not get the kernel built"
    line = next(line for line in done.stdout.splitlines() if line.startswith("FORECAST: "))
    got = json.loads(line.removeprefix("FORECAST: "))
    expected = offline_forecast(ROOT / "examples" / "sp500_tail.csv")
    assert got["predicted_prices"] == pytest.approx(expected["predicted_prices"], rel=1e-5)
    assert got["current_price"] == pytest.approx(expected["current_price"], rel=1e-9)
