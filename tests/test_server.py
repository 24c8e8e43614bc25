"""A real TorchServe (the session fixture in conftest.py) serving the archives end to end."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import psutil
import pytest
import requests
import ts
import yaml

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.testing.synthetic import TINY, embeddings_csv, write_checkpoint
from alm_ops import archive
from alm_ops.launcher import TorchServe
from tests.helpers import ROOT, SEED

TOKEN_REFUSED = "Token Authorization failed"


@pytest.fixture(scope="module")
def offline(torchserve: TorchServe):
    """In-process forecasters on the same checkpoints as the server's models, made on use."""
    made: dict[str, Forecaster] = {}

    def forecaster(name: str) -> Forecaster:
        if name not in made:
            made[name] = Forecaster.from_checkpoint(torchserve.checkpoint(name), name=name, device="cpu")
        return made[name]

    return forecaster


def assert_same_forecast(served: dict, expected: dict) -> None:
    """Same response; prices to 1e-5 relative: the server's and this process's compiled kernel
    (or its PyTorch fallback, 7e-7 apart) and batch composition change the last float32 bits."""
    assert served.keys() == expected.keys()
    assert served["predicted_prices"] == pytest.approx(expected["predicted_prices"], rel=1e-5)
    assert {k: v for k, v in served.items() if k != "predicted_prices"} == {
        k: v for k, v in expected.items() if k != "predicted_prices"
    }


# -- forecasts ---------------------------------------------------------------------------------


def test_every_transport_gives_the_offline_forecast(torchserve, offline):
    """Multipart data=/file= (bytes and text/csv), raw text/csv and octet-stream bodies all give
    the in-process Forecaster's answer for the full-size default model."""
    torchserve.ensure_model("seed_untrained")
    csv = embeddings_csv(rows=30, input_size=SEED.input_size, seed=3)
    expected = offline("seed_untrained").predict([csv])[0].body
    variants = {
        "multipart data (bytes)": dict(files={"data": ("prices.csv", csv)}),
        "multipart data (text/csv -> str)": dict(files={"data": ("prices.csv", csv, "text/csv")}),
        "multipart file": dict(files={"file": ("prices.csv", csv)}),
        "raw text/csv": dict(data=csv, headers={"Content-Type": "text/csv"}),
        "raw octet-stream": dict(data=csv, headers={"Content-Type": "application/octet-stream"}),
    }
    served = {}
    for label, kwargs in variants.items():
        response = torchserve.predict("seed_untrained", **kwargs)
        assert response.status_code == 200, (label, response.text)
        assert response.headers["content-type"].startswith("application/json")
        served[label] = response.json()
    first = next(iter(served.values()))
    assert all(body == first for body in served.values()), served  # one worker, batch of one: identical
    assert_same_forecast(first, expected)
    assert first["model"] == "seed_untrained" and first["prediction_horizon"] == SEED.output_size


def test_server_matches_the_offline_cli(torchserve, tmp_path):
    cli = ROOT / "scripts" / "forecast.py"
    path = tmp_path / "window.csv"
    path.write_bytes(embeddings_csv(rows=25, input_size=TINY.input_size, seed=11))
    done = subprocess.run(
        [
            sys.executable,
            str(cli),
            "--checkpoint",
            str(torchserve.checkpoint("tiny")),
            "--name",
            "tiny",
            "--threads",
            "1",
            "--device",
            "cpu",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    offline_answer = json.loads(done.stdout.strip().splitlines()[-1])
    response = torchserve.predict("tiny", files={"data": ("window.csv", path.read_bytes())})
    assert response.status_code == 200, response.text
    assert_same_forecast(response.json(), offline_answer)


def test_concurrent_batch_with_two_bad_requests(torchserve, offline):
    """20 concurrent requests, 2 malformed: 18 forecasts, 2 precise 4xx, the same worker."""
    pid_before = [w["pid"] for w in torchserve.workers("tiny")]
    payloads = [embeddings_csv(rows=20 + i, input_size=TINY.input_size, seed=100 + i) for i in range(20)]
    payloads[5] = payloads[5].replace(b",", b";")  # wrong delimiter: malformed (400)
    payloads[13] = embeddings_csv(rows=15, input_size=TINY.input_size, seed=113)  # too short (422)
    results: list[requests.Response | None] = [None] * len(payloads)
    barrier = threading.Barrier(len(payloads))

    def send(i: int) -> None:
        barrier.wait()
        results[i] = torchserve.predict("tiny", files={"data": (f"r{i}.csv", payloads[i])})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(payloads))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert results[5].status_code == 400, results[5].text
    assert results[5].json() == {
        "error": "The header on line 1 is separated by semicolons; the contract is a comma-separated file.",
        "code": 400,
    }
    assert results[13].status_code == 422, results[13].text
    assert results[13].json() == {"error": "Not enough data points. Need at least 20, got 15", "code": 422}
    good = [i for i in range(len(payloads)) if i not in (5, 13)]
    expected = [outcome.body for outcome in offline("tiny").predict([payloads[i] for i in good])]
    for i, want in zip(good, expected, strict=True):
        assert results[i].status_code == 200, (i, results[i].text)
        assert_same_forecast(results[i].json(), want)
    assert [w["pid"] for w in torchserve.workers("tiny")] == pid_before  # no worker restart


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        (dict(json={"rows": []}), 400, "Not a ForecastRequest: 'model' must be a non-empty string"),
        (dict(files={"csv": ("p.csv", b"emb_0\n1\n")}), 400, "No CSV found in the request (form fields received: 'csv"),
        (dict(data=b"", headers={"Content-Type": "text/csv"}), 400, "The body is empty"),
        (
            dict(data="é".encode("latin-1") * 10, headers={"Content-Type": "application/octet-stream"}),
            400,
            "not valid UTF-8",
        ),
        (dict(files={"data": ("p.csv", b"a,b\n1,2\n")}), 422, "Missing required columns: emb_0"),
    ],
    ids=["json", "unknown-field", "empty", "latin1", "missing-columns"],
)
def test_bad_requests_get_their_own_message(torchserve, kwargs, status, fragment):
    response = torchserve.predict("tiny", **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    if "json" in kwargs:  # a JSON document: KServe's ErrorResponse, the field in param
        assert body["error"]["param"] == "model" and body["error"]["code"] == str(status)
        body = {"code": int(body["error"]["code"]), "error": body["error"]["message"]}
    assert body["code"] == status and fragment in body["error"], body


# -- management API ------------------------------------------------------------------------


def test_describe_shows_the_model(torchserve):
    described = torchserve.describe("tiny", customized=True)
    meta = described["customizedMetadata"]
    assert meta["config"]["hidden_size"] == TINY.hidden_size
    assert meta["block_pattern"] == "sms" and meta["seq_len"] == 20 and meta["predicted_steps"] == 5
    assert meta["parameter_count"] > 0 and meta["device"] == "cpu"
    assert meta["checkpoint_sha256"] == hashlib.sha256(torchserve.checkpoint("tiny").read_bytes()).hexdigest()
    assert any("output_size=1" in d for d in meta["config_disagreements"]), meta["config_disagreements"]
    assert meta["torch_threads"] == 1 and meta["serving"]["settings"]["threads"] == 1
    # Self-contained: the worker imported alm_forecaster from the unpacked archive, not the repo.
    assert Path(meta["serving"]["package_dir"]).is_relative_to(torchserve.workdir / "tmp"), meta["serving"]
    defaults = yaml.safe_load((ROOT / "archive_configs" / "default.yaml").read_text())  # what ships
    for key in ("batchSize", "maxBatchDelay", "minWorkers", "maxWorkers"):
        assert described[key] == defaults[key], key
    assert len(described["workers"]) == defaults["minWorkers"]


def test_async_registration_versions_and_unregister(torchserve, tmp_path, offline):
    v2 = write_checkpoint(tmp_path / "tiny_v2.pt", TINY, seed=8)
    assert (
        archive.main(
            [
                str(v2),
                "--name",
                "tiny",
                "--version",
                "2.0",
                "--archive-name",
                "tiny_v2",
                "--export-path",
                str(torchserve.model_store),
            ]
        )
        == 0
    )
    response = torchserve.manage(
        "POST", "/models", params={"url": "tiny_v2.mar", "synchronous": "false", "initial_workers": 1}
    )
    assert response.status_code == 202, response.text
    torchserve.wait_ready("tiny", "2.0", timeout=90)
    versions = {m["modelVersion"] for m in torchserve.manage("GET", "/models/tiny/all").json()}
    assert versions == {"1.0", "2.0"}

    csv = embeddings_csv(rows=20, input_size=TINY.input_size, seed=5)
    expected_v2 = Forecaster.from_checkpoint(v2, name="tiny", version="2.0", device="cpu").predict([csv])[0].body
    assert torchserve.predict("tiny", data=csv, headers={"Content-Type": "text/csv"}).json()["model_version"] == "1.0"
    try:
        assert torchserve.manage("PUT", "/models/tiny/2.0/set-default").status_code == 200
        served = torchserve.predict("tiny", data=csv, headers={"Content-Type": "text/csv"})
        assert_same_forecast(served.json(), expected_v2)
        refused = torchserve.manage("DELETE", "/models/tiny/2.0")  # the default version cannot go
        assert refused.status_code == 403, refused.text
    finally:
        assert torchserve.manage("PUT", "/models/tiny/1.0/set-default").status_code == 200
    served_v1 = torchserve.predict("tiny", "1.0", data=csv, headers={"Content-Type": "text/csv"}).json()
    assert_same_forecast(served_v1, offline("tiny").predict([csv])[0].body)
    assert torchserve.manage("DELETE", "/models/tiny/2.0").status_code == 200
    assert torchserve.manage("GET", "/models/tiny/2.0").status_code == 404
    assert [m["modelVersion"] for m in torchserve.manage("GET", "/models/tiny/all").json()] == ["1.0"]


@pytest.mark.parametrize(
    ("url", "status", "fragment"),
    [
        ("file:///etc/elsewhere.mar", 404, "does not match any allowed URL"),
        ("https://example.invalid/model.mar", 404, "does not match any allowed URL"),
        ("../outside.mar", 404, "Relative path is not allowed"),
    ],
)
def test_registration_is_limited_to_the_model_store(torchserve, url, status, fragment):
    response = torchserve.manage("POST", "/models", params={"url": url, "synchronous": "true"})
    assert response.status_code == status and fragment in response.text, response.text


def test_scaling_workers_up_and_down(torchserve):
    shipped = {w["pid"] for w in torchserve.wait_ready("tiny")}
    response = torchserve.manage("PUT", "/models/tiny", params={"min_worker": 3, "synchronous": "true"})
    assert response.status_code == 200, response.text
    scaled_up = {w["pid"] for w in torchserve.wait_ready("tiny", count=3, timeout=90)}
    assert len(scaled_up) == 3 and shipped < scaled_up
    csv = embeddings_csv(rows=20, input_size=TINY.input_size, seed=9)
    assert torchserve.predict("tiny", data=csv, headers={"Content-Type": "text/csv"}).status_code == 200
    # TorchServe scales down only to max_worker: lower both, then give the ceiling back.
    params = {"min_worker": 1, "max_worker": 1, "synchronous": "true"}
    response = torchserve.manage("PUT", "/models/tiny", params=params)
    assert response.status_code == 200, response.text
    remaining = {w["pid"] for w in torchserve.wait_ready("tiny", count=1, timeout=60)}
    assert len(remaining) == 1 and remaining < scaled_up
    removed = [psutil.Process(pid) for pid in scaled_up - remaining if psutil.pid_exists(pid)]
    _, alive = psutil.wait_procs(removed, timeout=30)
    assert not alive, f"scaled-down worker still running: {alive}"
    # Back to the shipped scale for the tests after this one.
    params = {"min_worker": len(shipped), "max_worker": 4, "synchronous": "true"}
    assert torchserve.manage("PUT", "/models/tiny", params=params).status_code == 200
    restored = {w["pid"] for w in torchserve.wait_ready("tiny", count=len(shipped), timeout=90)}
    assert remaining < restored and torchserve.describe("tiny")["maxWorkers"] == 4


# -- metrics, tokens, hygiene ------------------------------------------------------------------


def test_front_end_runs_with_the_shipped_jvm_and_logging_settings(torchserve):
    """config.properties' vmargs reach the JVM, and log4j2.xml is in force: every event written
    once, no per-request DEBUG lines, lifecycle DEBUG lines kept, access lines in access_log."""
    java = next(p for p in torchserve.processes() if p.name() == "java")
    flags = java.cmdline()
    assert "-Xmx512m" in flags
    assert f"-Dlog4j.configurationFile=file://{ROOT / 'log4j2.xml'}" in flags
    access = torchserve.log_dir / "access_log.log"
    before = access.read_text().count("POST /predictions/tiny ")
    csv = embeddings_csv(rows=20, input_size=TINY.input_size, seed=4)
    for _ in range(3):
        assert torchserve.predict("tiny", data=csv, headers={"Content-Type": "text/csv"}).status_code == 200
    deadline = time.monotonic() + 10  # asynchronous logging: the lines follow shortly
    while access.read_text().count("POST /predictions/tiny ") < before + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert access.read_text().count("POST /predictions/tiny ") == before + 3
    ts_log = (torchserve.log_dir / "ts_log.log").read_text()
    # Positive controls for the absences below: TorchServe does log both per-request texts (its jar
    # holds them), and this file receives the front end's DEBUG lines, among them the very
    # statement that logs "Flushing req.cmd PREDICT" for every batch (here for the model's LOAD).
    with zipfile.ZipFile(Path(ts.__file__).parent / "frontend" / "model-server.jar") as jar:
        worker_thread = jar.read("org/pytorch/serve/wlm/WorkerThread.class")
        rest_job = jar.read("org/pytorch/serve/job/RestJob.class")
    assert b"Flushing req.cmd {} repeats" in worker_thread and b"Waiting time ns: {}" in rest_job
    assert "[DEBUG] " in ts_log and "Flushing req.cmd LOAD repeats" in ts_log
    assert "Waiting time ns" not in ts_log and "Flushing req.cmd PREDICT" not in ts_log
    # The access lines are written (access_log.log, counted above), to their own file only.
    assert "ACCESS_LOG" not in ts_log and "POST /predictions/tiny " not in ts_log
    started = [line for line in ts_log.splitlines() if "Worker cmdline" in line]
    assert started and len(started) == len(set(started)), "each worker start logged once"


def test_metrics_show_the_inference_counters_moving(torchserve):
    labels = {"model_name": "tiny"}
    before = torchserve.metric("ts_inference_requests_total", **labels)
    csv = embeddings_csv(rows=20, input_size=TINY.input_size, seed=21)
    for _ in range(3):
        assert torchserve.predict("tiny", data=csv, headers={"Content-Type": "text/csv"}).status_code == 200
    after = torchserve.metric("ts_inference_requests_total", **labels)
    assert after - before == 3
    assert torchserve.metric("ts_inference_latency_microseconds", **labels) > 0


@pytest.mark.parametrize("api", ["inference", "management"])
@pytest.mark.parametrize("token", [None, "wrong", "other-api-key"])
def test_missing_or_wrong_token_is_refused(torchserve, api, token):
    """TorchServe 0.12 answers 400 (not 401) with InvalidKeyException."""
    if token == "other-api-key":
        token = torchserve.keys["management" if api == "inference" else "inference"]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if api == "inference":
        response = requests.post(
            torchserve.inference_url + "/predictions/tiny",
            headers=headers,
            files={"data": ("p.csv", embeddings_csv(input_size=TINY.input_size))},
            timeout=30,
        )
    else:
        response = requests.get(torchserve.management_url + "/models", headers=headers, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "InvalidKeyException" and TOKEN_REFUSED in response.json()["message"]


def test_ping_needs_the_inference_token(torchserve):
    assert requests.get(torchserve.inference_url + "/ping", timeout=10).status_code == 400
    ok = requests.get(torchserve.inference_url + "/ping", headers=torchserve.auth(), timeout=10)
    assert ok.status_code == 200 and ok.json()["status"] == "Healthy"


def test_server_writes_nothing_into_the_repository(torchserve):
    assert (torchserve.workdir / "key_file.json").exists()
    assert not (ROOT / "key_file.json").exists() and not (ROOT / "logs").exists()
    java = [p for p in torchserve.processes() if "org.pytorch.serve.ModelServer" in " ".join(p.cmdline())]
    assert len(java) == 1 and Path(java[0].cwd()) == torchserve.workdir
    # (How fast it got READY is printed by conftest.py and timed in BENCHMARKS.md, not asserted:
    # start_torchserve already fails a server that is not READY within its timeout.)
