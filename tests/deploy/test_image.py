"""The container image, built and run for real (podman here, docker where it is installed).

One module-scoped build with the README's command (scripts/build_image.sh; the base image is
made from Debian's packages when no registry has it), one container from it, then what a
platform engineer relies on: the image's own HEALTHCHECK turns healthy once the default
model's workers are READY, a forecast equals the offline CLI's for the same file, a request
without a token is refused, the metrics port counts the forecast, the server runs as the
non-root user, the image holds no compiler and no training dependencies, and SIGTERM stops it
cleanly well inside the grace period. The container and the image tag are removed at the end
(the engine's layer cache stays, so a second build on the same machine takes seconds).

Times and the size are printed (``pytest -s``) for docs/operations.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from alm_ops.launcher import free_ports
from tests.deploy.conftest import APP_UID
from tests.deploy.containers import Engine, engine, offline_forecast, unique_name
from tests.helpers import ROOT

MODEL = "sp500_xlstm"
EXAMPLE = ROOT / "examples" / "sp500_tail.csv"
#: Aim of the issue; a larger image fails here rather than growing unnoticed.
MAX_IMAGE_BYTES = 1_300_000_000
BUILD_TIMEOUT = 1800
READY_TIMEOUT = 240
STOP_GRACE = 30


@dataclass
class Running:
    engine: Engine
    image: str
    container: str
    inference: str
    management: str
    metrics: str
    build_s: float
    ready_s: float

    def keys(self) -> dict:
        done = self.engine("exec", self.container, "cat", "/home/model-server/run/key_file.json")
        return json.loads(done.stdout)

    def inference_key(self) -> str:
        return self.keys()["inference"]["key"]


@pytest.fixture(scope="module")
def served() -> Iterator[Running]:
    eng = engine()
    image = f"localhost/{unique_name('alm-forecaster-test')}:latest"
    container = unique_name("alm-image-test")
    started = time.monotonic()
    build = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_image.sh"), "--debian-base", "--tag", image],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        env=_engine_env(eng),
    )
    build_s = time.monotonic() - started
    try:
        assert build.returncode == 0, f"image build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"
        print(f"\nimage build: {build_s:.0f} s; {build.stdout.strip().splitlines()[-1]}")
        ports = free_ports(3)
        published = [f"127.0.0.1:{port}:{inner}" for port, inner in zip(ports, (8080, 8081, 8082), strict=True)]
        started = time.monotonic()
        eng("run", "-d", "--name", container, *eng.run_flags, *sum((["-p", p] for p in published), []), image)
        ready_s = eng.wait_healthy(container, READY_TIMEOUT)
        print(f"container healthy (default model READY) {ready_s:.1f} s after start")
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        yield Running(eng, image, container, *urls, build_s=build_s, ready_s=ready_s)
    finally:
        eng.remove(container)
        eng("rmi", "-f", image, check=False, timeout=120)


def _engine_env(eng: Engine) -> dict[str, str]:
    return {**os.environ, "CONTAINER_ENGINE": eng.argv[0]}


def test_image_is_small_and_holds_no_build_or_training_tools(served):
    size = int(served.engine("image", "inspect", served.image, "--format", "{{.Size}}").stdout)
    print(f"image size {size / 1e6:.0f} MB")
    assert size <= MAX_IMAGE_BYTES, f"image is {size / 1e6:.0f} MB, above {MAX_IMAGE_BYTES / 1e6:.0f} MB"
    # The program goes in on stdin: the image holds no tests/ to run it from.
    probe = (Path(__file__).parent / "image_contents.py").read_text()
    done = served.engine("exec", "-i", served.container, "/opt/alm/.venv/bin/python", "-", stdin=probe)
    assert done.stdout.strip() == "[] []", f"the serving image holds: {done.stdout}"


def test_server_runs_as_the_non_root_user(served):
    user = served.engine("image", "inspect", served.image, "--format", "{{.Config.User}}").stdout.strip()
    assert user.split(":")[0] == str(APP_UID)
    assert served.engine("exec", served.container, "id", "-u").stdout.strip() == str(APP_UID)
    # Every process in the container, TorchServe's JVM and its Python workers included.
    uids = served.engine("exec", served.container, "sh", "-c", "awk '/^Uid:/{print $2}' /proc/[0-9]*/status")
    assert set(uids.stdout.split()) == {str(APP_UID)}, uids.stdout


def test_forecast_equals_the_offline_cli(served):
    expected = offline_forecast(EXAMPLE, MODEL)
    with EXAMPLE.open("rb") as body:
        answer = requests.post(
            f"{served.inference}/predictions/{MODEL}",
            files={"data": body},
            headers={"Authorization": f"Bearer {served.inference_key()}"},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["prediction_horizon"] == expected["prediction_horizon"]
    assert got["current_price"] == pytest.approx(expected["current_price"], rel=1e-9)
    assert got["predicted_prices"] == pytest.approx(expected["predicted_prices"], rel=1e-5)


def test_requests_without_a_token_are_refused(served):
    with EXAMPLE.open("rb") as body:
        answer = requests.post(f"{served.inference}/predictions/{MODEL}", files={"data": body}, timeout=30)
    assert answer.status_code == 400 and "InvalidKeyException" in answer.text, answer.text
    wrong = requests.get(f"{served.management}/models", headers={"Authorization": "Bearer wrong"}, timeout=30)
    assert wrong.status_code == 400, wrong.text


def test_metrics_port_counts_forecasts(served):
    headers = {"Authorization": f"Bearer {served.inference_key()}"}
    text = requests.get(f"{served.metrics}/metrics", timeout=30).text
    before = _forecasts_served(text)
    with EXAMPLE.open("rb") as body:
        assert (
            requests.post(
                f"{served.inference}/predictions/{MODEL}", files={"data": body}, headers=headers, timeout=60
            ).status_code
            == 200
        )
    after = _forecasts_served(requests.get(f"{served.metrics}/metrics", timeout=30).text)
    assert after == before + 1


def _forecasts_served(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("ForecastsServed{") and f'ModelName="{MODEL}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sigterm_stops_the_server_cleanly(served):
    """Last (pytest keeps file order): the container is stopped for good."""
    started = time.monotonic()
    served.engine("stop", "-t", str(STOP_GRACE), served.container, timeout=STOP_GRACE + 60)
    stop_s = time.monotonic() - started
    print(f"stopped by SIGTERM in {stop_s:.1f} s")
    state = json.loads(served.engine("inspect", "--format", "{{json .State}}", served.container).stdout)
    logs = served.engine("logs", served.container, check=False)
    # SIGTERM was enough: a container the engine had to SIGKILL after the grace period exits 137
    # (the exit code says it; how long the stop took is printed above, not asserted).
    assert state["ExitCode"] in (0, 143), f"exit code {state['ExitCode']}:\n{logs.stderr[-2000:]}"
    assert "OOMKilled" not in state or not state["OOMKilled"]
