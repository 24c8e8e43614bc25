"""deploy/prometheus/prometheus.yml: it scrapes the compose service's metrics port, and
``promtool`` (Debian's ``prometheus`` package) accepts it when it is installed."""

from __future__ import annotations

import yaml

from tests.deploy.conftest import ROOT, debian_tool, read_properties, run

PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def test_prometheus_scrapes_the_compose_service():
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["alm-forecaster"]
    assert job.get("metrics_path", "/metrics") == "/metrics" and job.get("scheme", "http") == "http"
    targets = [target for group in job["static_configs"] for target in group["targets"]]
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert targets == ["forecaster:8082"] and "forecaster" in compose["services"]
    assert read_properties(ROOT / "config.properties")["metrics_address"].endswith(":8082")


def test_prometheus_config_passes_promtool():
    promtool = debian_tool("promtool", "prometheus")
    done = run([promtool, "check", "config", "--syntax-only", str(PROMETHEUS_YML)])
    assert done.returncode == 0, done.stdout + done.stderr
