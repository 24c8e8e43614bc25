"""The container image's entrypoint (docker/entrypoint.sh) and the config it gives TorchServe,
run here up to TorchServe's start (an empty model store stops it there): the repository's
config.properties rendered by alm_ops.serve_config with the three HTTP APIs on 0.0.0.0."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from alm_ops.serve_config import ADDRESS_KEYS, read_properties, render
from tests.helpers import ROOT, pypi_tool

ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, **kwargs)


def entrypoint_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALM_")}
    env.update(
        ALM_APP_DIR=str(ROOT), ALM_RUN_DIR=str(tmp_path / "run"), ALM_MODEL_STORE=str(tmp_path / "store.d"), **extra
    )
    return env


def test_entrypoint_passes_shellcheck():
    done = run([pypi_tool("shellcheck"), "--severity=style", "docker/entrypoint.sh"], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_container_config_differs_from_the_host_config_only_in_the_addresses(tmp_path):
    (tmp_path / "store.d").mkdir()
    done = run(["bash", str(ENTRYPOINT)], env=entrypoint_env(tmp_path))
    assert done.returncode == 1 and "not found" in done.stderr, done.stdout + done.stderr
    container = read_properties(tmp_path / "run" / "config.properties")
    (tmp_path / "host.properties").write_text(render(tmp_path / "store.d"))  # as scripts/serve.sh renders it
    host = read_properties(tmp_path / "host.properties")
    assert set(host) == set(container), f"keys differ: {set(host) ^ set(container)}"
    differing = {key for key in host if host[key] != container[key]}
    assert differing <= set(ADDRESS_KEYS), f"unexpected differences: {differing - set(ADDRESS_KEYS)}"
    assert [container[key] for key in ADDRESS_KEYS] == [
        "http://0.0.0.0:8080",
        "http://0.0.0.0:8081",
        "http://0.0.0.0:8082",
    ]
    assert container["grpc_inference_address"] == container["grpc_management_address"] == "127.0.0.1"
    for config in (host, container):
        assert "disable_token_authorization" not in config
        assert config["metrics_mode"] == "prometheus"


def test_entrypoint_renders_the_container_config_and_refuses_missing_archives(tmp_path):
    """Runs docker/entrypoint.sh up to TorchServe's start: an empty store stops it there."""
    assert (ROOT / ".venv" / "bin" / "python").exists(), "the entrypoint uses ALM_APP_DIR/.venv"
    (tmp_path / "store.d").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "key_file.json").write_text("{}")
    env = entrypoint_env(
        tmp_path, ALM_MANAGEMENT_ADDRESS="http://127.0.0.1:8081", ALM_LOAD_MODELS="a=alpha.mar,beta.mar"
    )
    done = run(["bash", str(ENTRYPOINT)], env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "alpha.mar not found" in done.stderr and "beta.mar not found" in done.stderr
    assert not (tmp_path / "run" / "key_file.json").exists(), "stale keys must be removed before the start"
    config = read_properties(tmp_path / "run" / "config.properties")
    store = str((tmp_path / "store.d").resolve())
    assert config["model_store"] == store
    assert config["allowed_urls"] == "file://" + re.escape(store).replace("\\", "\\\\") + "/[^/]+\\\\.mar"
    assert config["management_address"] == "http://127.0.0.1:8081"
    assert config["inference_address"] == "http://0.0.0.0:8080"
    assert config["load_models"] == "a=alpha.mar,beta.mar"


def test_entrypoint_default_models_and_passthrough(tmp_path):
    (tmp_path / "store.d").mkdir()
    done = run(["bash", str(ENTRYPOINT)], env=entrypoint_env(tmp_path))
    assert done.returncode == 1 and "sp500_xlstm.mar not found" in done.stderr
    done = run(["bash", str(ENTRYPOINT), "echo", "sidecar"], env=entrypoint_env(tmp_path))
    assert done.returncode == 0 and done.stdout.strip() == "sidecar"
