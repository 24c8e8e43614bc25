"""The bad-input corpus, sent through the REAL server (the session TorchServe of conftest.py).

Every case goes out in one burst of 8 concurrent requests: the case in each transport
(multipart ``data`` as bytes and as a ``text/csv`` part, multipart ``file``, raw ``text/csv``
body, raw ``application/octet-stream`` body), filled up with good requests. The model,
``hostile`` (the session's tiny checkpoint under its own name, so that no other test's
scaling or versions disturb its worker), is registered with ONE worker, ``batchSize: 8`` and
``maxBatchDelay: 200`` ms: a burst is ONE batch, so every bad request shares its forward pass
with good ones. For every case:

* each bad request gets the right 4xx and the exact message (column, row, line, counts);
* every good request of the burst gets 200 with the in-process `Forecaster`'s answer;
* the worker's PID is the same before and after (no crash, no restart).

Cases that are valid (BOM, CRLF, extra or reordered columns, a very wide and a very long
file) must give the forecast of the same data sent cleanly.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from alm_forecaster.forecaster import Forecaster
from alm_ops.launcher import TorchServe
from tests.corpus import (
    BURST,
    CASES,
    CASES_BY_ID,
    EXTRA_TRANSPORTS,
    MODEL,
    ONE_WORKER,
    TRANSPORTS,
    base,
    with_cell,
)
from tests.helpers import assert_forecast, max_request_size, register_model, unregister_model

# -- the registered model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(torchserve: TorchServe):
    register_model(torchserve, MODEL, torchserve.checkpoint("tiny"), ONE_WORKER + "batchSize: 8\nmaxBatchDelay: 200\n")
    yield torchserve
    unregister_model(torchserve, MODEL)


@pytest.fixture(scope="module")
def offline(torchserve: TorchServe) -> Forecaster:
    return Forecaster.from_checkpoint(torchserve.checkpoint("tiny"), name=MODEL, device="cpu")


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30 and len(CASES_BY_ID) == len(CASES)
    assert sum(case.status in (400, 422) for case in CASES) >= 30


# -- sending a burst ---------------------------------------------------------------------------


def burst(
    torchserve: TorchServe, calls: list[dict], model: str = MODEL, delays: list[float] | None = None
) -> list[requests.Response]:
    """Send every call (requests kwargs) at once, from its own thread (call ``i`` waits
    ``delays[i]`` seconds after the common start); responses in order."""
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def send(i: int) -> None:
        barrier.wait()
        if delays and delays[i]:
            time.sleep(delays[i])
        try:
            results[i] = torchserve.predict(model, **calls[i])
        except requests.RequestException as exc:  # reported below, not swallowed
            results[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for i, result in enumerate(results):
        assert isinstance(result, requests.Response), f"request {i}: {result!r}"
    return results


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(served, offline, case):
    limit = max_request_size(served)
    body = case.body(limit)
    assert len(body) < limit
    senders = {**TRANSPORTS, **EXTRA_TRANSPORTS}
    bad = [(name, senders[name](body)) for name in case.transports]
    goods = [base(rows=20 + i, seed=40 + i) for i in range(max(BURST - len(bad), 2))]
    pids = [w["pid"] for w in served.workers(MODEL)]

    responses = burst(served, [kwargs for _, kwargs in bad] + [TRANSPORTS["multipart-data"](g) for g in goods])

    expected = offline.predict([body])[0].body if case.status == 200 else None
    clean = offline.predict([case.same_as()])[0].body if case.same_as is not None else None
    for (name, _kwargs), response in zip(bad, responses, strict=False):
        label = f"{case.id} via {name}"
        if expected is not None:
            assert_forecast(response, expected, label)
            if clean is not None:
                assert_forecast(response, clean, label + " (same as the clean file)")
            continue
        assert response.status_code == case.status, (label, response.status_code, response.text[:500])
        assert response.headers["content-type"].startswith("application/json"), label
        error = response.json()
        if name == "application-json":  # a JSON body: KServe's ErrorResponse, status as a string
            error = {"code": int(error["error"]["code"]), "error": error["error"]["message"]}
        fragment = case.fragment(body) if callable(case.fragment) else case.fragment
        assert error["code"] == case.status and fragment in error["error"], (label, error)
    for good, response in zip(goods, responses[len(bad) :], strict=True):
        assert_forecast(response, offline.predict([good])[0].body, f"good batch mate of {case.id}")
    assert [w["pid"] for w in served.workers(MODEL)] == pids, f"worker restarted after {case.id}"


def test_body_above_max_request_size_is_refused_by_torchserve(served, offline):
    """One byte over max_request_size: TorchServe's own 413, before any worker sees it; the
    concurrent good request is answered, the worker is untouched."""
    limit = max_request_size(served)
    too_big = b"emb_0,last_price\n" + b"0.5,1.0\n" * (limit // 8)
    too_big = too_big[: limit + 1]
    good = base(seed=77)
    pids = [w["pid"] for w in served.workers(MODEL)]
    at_limit = served.predict(MODEL, data=too_big[:limit], headers={"Content-Type": "application/octet-stream"})
    assert at_limit.status_code != 413, "a body of exactly max_request_size must reach the handler"
    responses = burst(
        served,
        [
            {"data": too_big, "headers": {"Content-Type": "application/octet-stream"}},
            {"files": {"data": ("big.csv", too_big)}},
            TRANSPORTS["text-csv"](good),
        ],
    )
    for response in responses[:2]:
        # TorchServe 0.12 answers this one with an empty body (no JSON error object).
        assert response.status_code == 413, (response.status_code, response.text[:300])
        assert response.content == b"", response.content[:300]
    assert_forecast(responses[2], offline.predict([good])[0].body, "good batch mate of the 413s")
    assert [w["pid"] for w in served.workers(MODEL)] == pids


def test_bad_requests_really_share_a_batch_with_good_ones(served, offline):
    """Proof that the bursts above are batched: the handler logs a refused request with its
    index in the batch; a bad request sent just after 7 good ones has an index > 0."""
    log = served.log_dir / "model_log.log"
    start = log.stat().st_size
    goods = [base(rows=20, seed=90 + i) for i in range(BURST - 1)]
    marker = "n/a-batched-marker"
    bad = with_cell(10, "emb_0", marker)
    calls = [TRANSPORTS["text-csv"](g) for g in goods] + [TRANSPORTS["text-csv"](bad)]
    responses = burst(served, calls, delays=[0.0] * len(goods) + [0.03])  # within maxBatchDelay (200 ms)
    assert responses[-1].status_code == 422 and marker in responses[-1].json()["error"]
    for good, response in zip(goods, responses, strict=False):
        assert_forecast(response, offline.predict([good])[0].body, "batch mate")
    with open(log, "rb") as handle:
        handle.seek(start)
        new = handle.read().decode(errors="replace")
    lines = [line for line in new.splitlines() if MODEL in line and marker in line]
    assert lines, "the handler did not log the refused request"
    indexes = [int(m.group(1)) for line in lines if (m := re.search(r"request (\d+) refused", line))]
    assert indexes and max(indexes) > 0, lines
