"""Zero-downtime operations against the real TorchServe 0.12 (docs/operations.md, "Operations
under load").

* The session server: a bulk client (alm_ops.bulk.Client, its retries as shipped) forecasting
  continuously from several threads while the model is scaled 1 -> 3 -> 1 three times and a new
  version is rolled out (register, set-default, unregister the old one, all with the lifecycle
  CLI) gets every forecast, each equal to `Forecaster.predict` for its file.
* Servers of their own, stopped under load:
  - the pod's shutdown (the token gateway drains, docker/prestop.py holds TorchServe's SIGTERM
    until the gateway is gone): every request is answered or refused before it is accepted
    (connection refused), none is accepted and then left without an answer;
  - TorchServe alone on SIGTERM (what scripts/stop.sh sends): it refuses new connections at
    once, but what it is processing gets no answer (it closes the connections: 0.12 has no
    drain), which is why the pod stops through the gateway.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from alm_forecaster.testing.synthetic import TINY, embeddings_csv, write_checkpoint
from alm_ops import archive, bulk, lifecycle
from alm_ops.launcher import TorchServe, start_torchserve
from alm_ops.ops_under_load import Load, Operations, expected_forecasts

CLIENTS = 6
LOAD_TIMEOUT = 60  # s for the clients' next results: a stalled load fails, a slow one does not


def inputs(directory: Path, count: int = 6) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"window_{i}.csv"
        path.write_bytes(embeddings_csv(rows=20 + i, input_size=TINY.input_size, seed=60 + i))
        paths.append(path)
    return paths


def build(checkpoint: Path, name: str, version: str, store: Path) -> str:
    archive_name = f"{name}_{version.replace('.', '_')}"
    argv = [str(checkpoint), "--name", name, "--version", version, "--archive-name", archive_name]
    assert archive.main([*argv, "--export-path", str(store)]) == 0
    return f"{archive_name}.mar"


def more_results(results: list, count: int, timeout: float = LOAD_TIMEOUT) -> None:
    """Wait until the clients have added ``count`` results (the load goes on)."""
    target = len(results) + count
    deadline = time.monotonic() + timeout
    while len(results) < target:
        assert time.monotonic() < deadline, f"the load stalled at {len(results)} results"
        time.sleep(0.01)


def more_outcomes(load: Load, count: int, timeout: float = LOAD_TIMEOUT) -> None:
    """Wait until the load's clients have had ``count`` more outcomes (answers or failures)."""
    target = load.tally.sent + count
    deadline = time.monotonic() + timeout
    while load.tally.sent < target:
        assert time.monotonic() < deadline, f"the load stalled: {load.tally}"
        time.sleep(0.01)


def lifecycle_cli(server: TorchServe, *argv: str) -> None:
    key_file = str(server.workdir / "key_file.json")
    assert lifecycle.main([*argv, "--url", server.management_url, "--token-file", key_file]) == 0, argv


def test_a_bulk_client_loses_nothing_while_scaling_down_and_rolling_out(torchserve, tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "zd.pt", TINY, seed=11)
    # One checkpoint in both versions: the rollout must not change a single forecast.
    archives = {v: build(checkpoint, "zd", v, torchserve.model_store) for v in ("1.0", "2.0")}
    files = inputs(tmp_path / "in")
    expected = expected_forecasts(checkpoint, files)
    client = bulk.Client(torchserve.inference_url, "zd", torchserve.tokens["inference"], backoff=0.2, timeout=10)
    results, stop = [], threading.Event()

    def forecasting(first: int) -> None:
        k = first
        while not stop.is_set():
            path = files[k % len(files)]
            k += 1
            results.append((path, client.forecast(str(path))))

    threads = [threading.Thread(target=forecasting, args=(i,), daemon=True) for i in range(CLIENTS)]
    try:
        lifecycle_cli(torchserve, "register", archives["1.0"], "--workers", "2", "--wait", "--timeout", "90")
        for thread in threads:
            thread.start()
        # Each operation starts once the clients have forecast again since the last one (events,
        # not sleeps: on a slow machine the load still runs through every step).
        more_results(results, 2 * CLIENTS)
        for _ in range(3):
            lifecycle_cli(torchserve, "scale", "zd", "--min", "3", "--timeout", "90")
            more_results(results, CLIENTS)
            lifecycle_cli(torchserve, "scale", "zd", "--min", "1", "--timeout", "90")
            more_results(results, CLIENTS)
        lifecycle_cli(torchserve, "register", archives["2.0"], "--workers", "2", "--wait", "--timeout", "90")
        lifecycle_cli(torchserve, "set-default", "zd", "2.0", "--timeout", "90")
        lifecycle_cli(torchserve, "unregister", "zd", "1.0")
        more_results(results, 2 * CLIENTS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        key_file = str(torchserve.workdir / "key_file.json")
        lifecycle.main(
            ["unregister", "zd", "--all", "--drain", "0", "--url", torchserve.management_url, "--token-file", key_file]
        )
        for name in archives.values():
            (torchserve.model_store / name).unlink(missing_ok=True)
    capsys.readouterr()

    failed = [(path.name, r.status, r.error) for path, r in results if not r.ok]
    assert not failed, failed
    for path, result in results:
        assert list(result.forecast.point[0]) == pytest.approx(expected[str(path)], rel=1e-5), path.name
    versions = Counter(r.forecast.version for _, r in results)
    assert set(versions) == {"1.0", "2.0"}, versions
    print(f"{len(results)} forecasts, {sum(r.attempts > 1 for _, r in results)} after a retry, versions {versions}")


@pytest.fixture
def own_server(tmp_path):
    """A TorchServe of its own serving ``stopme`` (tiny), for a test that stops it."""
    checkpoint = write_checkpoint(tmp_path / "stopme.pt", TINY, seed=12)
    store = tmp_path / "store"
    assert archive.main([str(checkpoint), "--name", "stopme", "--export-path", str(store)]) == 0
    with start_torchserve(tmp_path / "server", store, ["stopme"]) as server, contextlib.ExitStack() as held:
        yield Operations(server, "stopme", checkpoint, held), expected_forecasts(checkpoint, inputs(tmp_path / "in"))


def stopped_under_load(operations: Operations, expected: dict, operation: str) -> tuple[Load, str]:
    """Raw clients (one attempt per request) forecasting while ``operation`` stops the server."""
    operations.prepare(operation)
    url, token = operations.front()
    with Load(url, token, operations.model, expected, CLIENTS, "raw", timeout=10) as load:
        more_outcomes(load, 2 * CLIENTS)  # the load is running
        load.mark()
        did = operations.run(operation)
        more_outcomes(load, 2 * CLIENTS)  # and kept trying after the operation
    assert not operations.server.processes(), "every process of the server is gone"
    return load, did


def test_the_pods_shutdown_answers_or_refuses_every_request(own_server):
    """Through the gateway: whatever was accepted is answered, the rest is refused (a client
    then reaches another pod)."""
    operations, expected = own_server
    load, did = stopped_under_load(operations, expected, "pod-stop")
    tally = load.tally
    assert "the gateway is gone" in did, did
    assert tally.ok > 0 and set(tally.in_flight) == {"200"}, tally
    assert set(tally.failed) <= {"refused"}, tally.failed  # never "no answer", never a timeout


def test_torchserve_alone_refuses_new_connections_but_drops_what_it_holds(own_server):
    """What TorchServe 0.12 allows on SIGTERM: new connections are refused at once; a request it
    holds is answered if it finishes first, else its connection is closed without an answer
    (never left hanging, never a wrong forecast)."""
    operations, expected = own_server
    load, did = stopped_under_load(operations, expected, "sigterm")
    tally = load.tally
    assert tally.failed["refused"] > 0, tally.failed
    assert not tally.failed["timeout"] and not tally.failed["wrong forecast"], tally.failed
    print(f"in flight at SIGTERM: {dict(tally.in_flight)}; failed: {dict(tally.failed)}")
