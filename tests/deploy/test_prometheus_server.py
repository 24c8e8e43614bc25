"""A real Prometheus scraping the real TorchServe of the session: what the dashboard relies on.

``prometheus`` (Debian's package, which scripts/setup_env.sh --dev installs; missing, the test
skips with the install line, and fails under ALM_REQUIRE_TOOLS=1 as in CI) runs as a subprocess
with its own configuration (one job, the session server's metrics address as its only static
target, scraped every second), its own TSDB directory and one free loopback port. A model with
fresh counters (``tiny``'s checkpoint registered under a name no other test uses) gets known
traffic: N good forecasts and refusals for three reasons, each with a different count. PromQL
through Prometheus' HTTP API must then return:

* ``ForecastsServed{ModelName=...}`` == N, one series labelled as metrics_config.yaml declares
  (plus Prometheus' ``job`` and ``instance``);
* ``sum by (Reason) (RequestsRejected{ModelName=...})`` == the count sent per reason, exactly;
* ``up{job=...}`` == 1, and ``/api/v1/targets`` shows the target with health "up";
* nothing for the model before its traffic, nothing for a model name that was never served and
  nothing for a reason that was not sent (the negative controls: an always-true query fails them).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
import yaml

from alm_forecaster.testing.synthetic import TINY, embeddings_csv
from alm_ops.launcher import TorchServe, free_ports
from tests.helpers import debian_tool

JOB = "torchserve"
MODEL = "prom_scraped"  # used by no other test: its counters start at zero in the session server
NEVER_SERVED = "no_such_model"
GOOD = 4  # N good forecasts
#: reason -> how many requests to refuse for it; distinct counts, so that swapped labels show
REJECTED = {"too_few_rows": 2, "bad_value": 3, "missing_columns": 1}
READY_TIMEOUT = 30  # s for Prometheus to answer /-/ready (about 1 s on an idle machine)
SCRAPE_TIMEOUT = 30  # s for a scrape newer than a given moment (the interval is 1 s)
FOLD_TIMEOUT = 15  # s for TorchServe's front end to fold the worker's metric lines into its page


@dataclass
class Prometheus:
    """A running Prometheus: its HTTP API and where it logs."""

    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def get(self, path: str, **params: str) -> dict:
        """GET an API path; the ``data`` of a successful answer."""
        response = requests.get(self.url + path, params=params, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant query: the vector's samples, each ``{"metric": labels, "value": [t, "v"]}``."""
        data = self.get("/api/v1/query", query=promql)
        assert data["resultType"] == "vector", data
        return data["result"]

    def last_scrape(self) -> float:
        """Unix time at which the newest visible scrape of the job started (0 before the first).
        A scrape's samples, ``up`` included, carry its start time and are committed together."""
        result = self.query(f'timestamp(up{{job="{JOB}"}})')
        return float(result[0]["value"][1]) if result else 0.0

    def wait_for_scrape_after(self, moment: float, timeout: float = SCRAPE_TIMEOUT) -> float:
        """Block until a scrape that started after ``moment`` is visible; its start time."""
        deadline = time.monotonic() + timeout
        while (scraped := self.last_scrape()) <= moment:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise TimeoutError(f"no scrape after {moment:.3f} (newest {scraped:.3f})\n{self.log_tail()}")
            time.sleep(0.2)
        return scraped


@pytest.fixture
def fresh_model(torchserve: TorchServe) -> Iterator[str]:
    """``tiny``'s checkpoint archived and registered as MODEL (one worker) for this test only."""
    torchserve.checkpoints[MODEL] = torchserve.checkpoint("tiny")  # ensure_model archives this
    try:
        torchserve.ensure_model(MODEL)
        yield MODEL
    finally:
        torchserve.manage("DELETE", f"/models/{MODEL}")
        (torchserve.model_store / f"{MODEL}.mar").unlink(missing_ok=True)
        torchserve.checkpoints.pop(MODEL, None)


@pytest.fixture
def prometheus(torchserve: TorchServe, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus scraping the session server's metrics endpoint every second, on one free
    loopback port, with its TSDB under tmp_path; terminated and waited for at the end."""
    binary = debian_tool("prometheus", "prometheus")
    target = urlsplit(torchserve.metrics_url).netloc  # 127.0.0.1:<port>
    config = {
        # Explicit, so the config reads as what runs: a timeout above the interval is refused, an
        # unset one would be clamped to it. A stuck scrape shows within a second either way.
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": [target]}]}],
    }
    config_file = tmp_path / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    [port] = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "prometheus.log"
    command = [
        binary,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",  # its only listener
        "--log.level=warn",
    ]
    with open(log, "wb") as out:  # a file, not a pipe: nobody would drain a pipe during the test
        process = subprocess.Popen(
            command, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = Prometheus(url, process, log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with status {process.returncode}\n{server.log_tail()}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/-/ready", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready after {READY_TIMEOUT} s\n{server.log_tail()}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            pytest.fail(f"prometheus ignored SIGTERM (killed)\n{server.log_tail()}")


def source_counts(torchserve: TorchServe, model: str) -> dict[str, float]:
    """The model's counters on TorchServe's own page: ForecastsServed and each sent reason."""
    counts = {"ForecastsServed": torchserve.metric("ForecastsServed", ModelName=model)}
    for reason in REJECTED:
        counts[reason] = torchserve.metric("RequestsRejected", ModelName=model, Reason=reason)
    return counts


def test_prometheus_scrapes_the_exact_domain_counters(torchserve: TorchServe, fresh_model: str, prometheus: Prometheus):
    version = torchserve.describe(fresh_model)["modelVersion"]
    selector = f'{{ModelName="{fresh_model}"}}'
    expected = {"ForecastsServed": float(GOOD), **{reason: float(n) for reason, n in REJECTED.items()}}

    # Before any traffic: zero at the source and no series in Prometheus (a scrape newer than
    # the registration has been seen), so that every value below comes from this test's requests.
    assert source_counts(torchserve, fresh_model) == dict.fromkeys(expected, 0.0)
    prometheus.wait_for_scrape_after(time.time())
    assert prometheus.query(f"ForecastsServed{selector}") == []
    assert prometheus.query(f"RequestsRejected{selector}") == []

    good = [embeddings_csv(rows=20 + i, input_size=TINY.input_size, seed=500 + i) for i in range(GOOD)]
    lines = good[0].split(b"\n")
    lines[3] = b"abc" + lines[3][lines[3].index(b",") :]  # a non-numeric embedding cell: bad_value
    bodies = {
        "too_few_rows": embeddings_csv(rows=5, input_size=TINY.input_size, seed=1),
        "bad_value": b"\n".join(lines),
        "missing_columns": b"a,b\n1,2\n",
    }
    statuses = [torchserve.predict(fresh_model, files={"data": ("g.csv", body)}).status_code for body in good]
    for reason, count in REJECTED.items():
        for _ in range(count):
            response = torchserve.predict(fresh_model, files={"data": ("b.csv", bodies[reason])})
            assert response.status_code == 422, (reason, response.text)
    assert statuses == [200] * GOOD

    # The worker logs its metric lines and the front end folds them in asynchronously: wait
    # until TorchServe's own page has them all (they only grow, so an overshoot fails below).
    deadline = time.monotonic() + FOLD_TIMEOUT
    while (counts := source_counts(torchserve, fresh_model)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert counts == expected
    # A scrape that STARTED after this moment read a page with every count: one exact look.
    prometheus.wait_for_scrape_after(time.time())

    [served] = prometheus.query(f"ForecastsServed{selector}")
    assert float(served["value"][1]) == GOOD
    labels = served["metric"]
    assert set(labels) == {"__name__", "job", "instance", "ModelName", "ModelVersion", "Level", "Hostname"}, labels
    assert labels["job"] == JOB and labels["instance"] == urlsplit(torchserve.metrics_url).netloc
    assert labels["ModelVersion"] == version and labels["Level"] == "Model"

    by_reason = prometheus.query(f"sum by (Reason) (RequestsRejected{selector})")
    assert {sample["metric"]["Reason"]: float(sample["value"][1]) for sample in by_reason} == REJECTED
    [total] = prometheus.query(f"sum(RequestsRejected{selector})")
    assert float(total["value"][1]) == sum(REJECTED.values())

    # The stage histogram: every request observed the handler's call once, and a p99 reads from it.
    [handled] = prometheus.query(f'StageSeconds_count{{ModelName="{fresh_model}", Stage="handler"}}')
    assert float(handled["value"][1]) == GOOD + sum(REJECTED.values())
    [p99] = prometheus.query(
        f'histogram_quantile(0.99, sum by (le) (StageSeconds_bucket{{ModelName="{fresh_model}", Stage="handler"}}))'
    )
    assert 0 < float(p99["value"][1]) <= 10.0, p99  # seconds, inside the default buckets

    [up] = prometheus.query(f'up{{job="{JOB}"}}')
    assert up["value"][1] == "1"
    [target] = [t for t in prometheus.get("/api/v1/targets")["activeTargets"] if t["labels"]["job"] == JOB]
    assert target["health"] == "up" and target["lastError"] == "", target
    assert target["scrapeUrl"] == torchserve.metrics_url + "/metrics"

    # Negative controls: the same queries for a model never served and a reason never sent are empty.
    assert prometheus.query(f'ForecastsServed{{ModelName="{NEVER_SERVED}"}}') == []
    assert prometheus.query(f'sum by (Reason) (RequestsRejected{{ModelName="{NEVER_SERVED}"}})') == []
    assert prometheus.query(f'RequestsRejected{{ModelName="{fresh_model}", Reason="encoding"}}') == []
