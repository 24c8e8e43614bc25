"""docker/healthcheck.py, the image's HEALTHCHECK and the Kubernetes exec probes, against a fake
TorchServe 0.12: readiness needs READY workers, liveness only an answer."""

from __future__ import annotations

import json
import os
import sys

from tests.deploy.conftest import ROOT, FakeTorchServe, load_module, run

healthcheck = load_module(ROOT / "docker" / "healthcheck.py")


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
