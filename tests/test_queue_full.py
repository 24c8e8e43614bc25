"""A private TorchServe (`start_torchserve`) with a tiny job queue: what README.md and
config.properties promise about the queue and the keys, on a real server.

* ``job_queue_size``: a model whose queue is full answers 503 (TorchServe's own body), at once,
  and serves normally afterwards: every accepted request gets its forecast. The model has one
  worker taking one request at a time (batchSize 1); the worker is stopped (SIGSTOP) while the
  requests arrive, so that exactly one request is in its hands and QUEUE wait in the queue,
  whatever the machine's speed: no timing decides the outcome.
* ``token_expiration_min``: the inference and management keys the server writes expire 60
  minutes after it issued them (the API key never does).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.testing.synthetic import TINY, embeddings_csv, write_checkpoint
from alm_ops import archive, serve_config
from alm_ops.launcher import TorchServe, start_torchserve
from tests.helpers import assert_forecast, validate

MODEL = "queued"
QUEUE = 2  # job_queue_size of this server
OVERFLOW = 3  # requests beyond the one the worker holds and the QUEUE queued ones
ONE_AT_A_TIME = "minWorkers: 1\nmaxWorkers: 1\nbatchSize: 1\nmaxBatchDelay: 1\n"
CSV = {"Content-Type": "text/csv"}
REFUSAL_TIMEOUT = 30  # s for the overflowing requests' 503s (immediate: no worker is involved)


@pytest.fixture(scope="module")
def small_queue(tmp_path_factory) -> tuple[TorchServe, Forecaster, datetime]:
    workdir = tmp_path_factory.mktemp("queue-server")
    store = workdir / "model_store"
    checkpoint = write_checkpoint(workdir / "queued.pt", TINY, seed=5)
    config = workdir / "one_at_a_time.yaml"
    config.write_text(ONE_AT_A_TIME)
    argv = [str(checkpoint), "--name", MODEL, "--config", str(config), "--export-path", str(store)]
    assert archive.main(argv) == 0
    launched = datetime.now(UTC)
    with start_torchserve(workdir, store, [MODEL], overrides={"job_queue_size": str(QUEUE)}) as server:
        yield server, Forecaster.from_checkpoint(checkpoint, name=MODEL, device="cpu"), launched


def test_a_full_queue_is_a_503_and_then_the_server_serves_normally(small_queue):
    server, offline, _ = small_queue
    assert serve_config.read_properties(server.workdir / "config.properties")["job_queue_size"] == str(QUEUE)
    [worker] = server.workers(MODEL)
    payloads = [embeddings_csv(rows=20, input_size=TINY.input_size, seed=600 + i) for i in range(1 + QUEUE + OVERFLOW)]
    expected = [outcome.body for outcome in offline.predict(payloads)]
    pool = ThreadPoolExecutor(len(payloads))
    os.kill(worker["pid"], signal.SIGSTOP)
    try:
        futures = [pool.submit(server.predict, MODEL, data=payload, headers=CSV) for payload in payloads]
        deadline = time.monotonic() + REFUSAL_TIMEOUT
        while sum(f.done() for f in futures) < OVERFLOW:
            assert time.monotonic() < deadline, f"no 503 for a full queue: {_states(futures)}"
            time.sleep(0.02)
        # Only the overflow is answered while the worker is stopped: OVERFLOW 503s imply that
        # 1 + QUEUE requests were accepted first, and none of those can be answered yet.
        refused = [i for i, f in enumerate(futures) if f.done()]
        assert len(refused) == OVERFLOW, _states(futures)
        for i in refused:
            response = futures[i].result()
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["code"] == 503 and body["type"] == "ServiceUnavailableException", body
            assert MODEL in body["message"], body
            validate("/predictions/{model}", response)  # a status and body docs/openapi.yaml lists
    finally:
        os.kill(worker["pid"], signal.SIGCONT)
        pool.shutdown(wait=True)
    # The accepted requests: every one answered with its forecast once the worker runs again.
    for i, future in enumerate(futures):
        if i not in refused:
            assert_forecast(future.result(), expected[i], f"accepted request {i}")
    # And the server serves normally, with the same worker: nothing was restarted.
    assert_forecast(server.predict(MODEL, data=payloads[0], headers=CSV), expected[0], "after the 503s")
    assert [w["pid"] for w in server.workers(MODEL)] == [worker["pid"]]


def _states(futures: list[Future]) -> list[str]:
    return [f"{f.result().status_code}" if f.done() and not f.exception() else "pending" for f in futures]


def test_keys_expire_60_minutes_after_they_were_issued(small_queue):
    """README: "Keys expire after 60 minutes (token_expiration_min)"; the API key never."""
    server, _, launched = small_queue
    minutes = int(serve_config.read_properties(server.workdir / "config.properties")["token_expiration_min"])
    assert minutes == 60  # README and config.properties: tests/test_security.py
    keys = json.loads((server.workdir / "key_file.json").read_text())
    for kind in ("inference", "management"):
        expires = _instant(keys[kind]["expiration time"])
        assert launched + timedelta(minutes=minutes) <= expires + timedelta(seconds=1), (kind, expires, launched)
        assert expires <= datetime.now(UTC) + timedelta(minutes=minutes), (kind, expires)
    assert "expiration time" not in keys["API"], keys["API"]


def _instant(text: str) -> datetime:
    """TorchServe's ``Instant.toString()`` (``2026-01-02T03:04:05.123456789Z``), to the second."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", text)
    assert match, text
    return datetime.fromisoformat(match[1]).replace(tzinfo=UTC)
