"""The bulk client (alm_ops.bulk, scripts/client.py) against the real TorchServe of the session,
and against a scripted local HTTP server for the retry and token-rotation paths."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from alm_forecaster.testing.synthetic import TINY, embeddings_csv
from alm_ops import bulk
from alm_ops.launcher import TorchServe, free_ports
from tests.helpers import ROOT, Scripted

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Three good windows for ``tiny`` and two bad ones, in a known order."""
    made = {
        "good_a": embeddings_csv(rows=20, input_size=TINY.input_size, seed=31),
        "missing": b"a,b\n1,2\n",
        "good_b": embeddings_csv(rows=25, input_size=TINY.input_size, seed=32),
        "short": embeddings_csv(rows=5, input_size=TINY.input_size, seed=33),
        "good_c": embeddings_csv(rows=30, input_size=TINY.input_size, seed=34),
    }
    paths = {}
    for name, content in made.items():
        paths[name] = tmp_path / "in" / f"{name}.csv"
        paths[name].parent.mkdir(exist_ok=True)
        paths[name].write_bytes(content)
    return paths


def real_args(torchserve: TorchServe, *extra: str) -> list[str]:
    return ["--url", torchserve.inference_url, "--model", "tiny", "--no-progress", *extra]


def key_file(torchserve: TorchServe) -> str:
    return str(torchserve.workdir / "key_file.json")


# -- against the real server ------------------------------------------------------------------


def test_many_files_in_input_order_with_the_failures_listed(torchserve, files, capsys, monkeypatch):
    monkeypatch.delenv(bulk.TOKEN_ENV, raising=False)
    paths = [str(p) for p in files.values()]
    code = bulk.main([*paths, *real_args(torchserve, "--concurrency", "3", "--token-file", key_file(torchserve))])
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert [line["file"] for line in lines] == paths
    assert [line["status"] for line in lines] == [200, 422, 200, 422, 200]
    for line in lines[0::2]:
        forecast = line["forecast"]
        assert forecast["model"] == "tiny" and len(forecast["predicted_prices"]) == forecast["prediction_horizon"] == 5
    direct = torchserve.predict("tiny", files={"data": ("x.csv", files["good_b"].read_bytes())}).json()
    # Same answer as a direct request, to the last float32 bits (batch composition may differ).
    assert lines[2]["forecast"]["predicted_prices"] == pytest.approx(direct["predicted_prices"], rel=1e-5)
    assert {k: v for k, v in lines[2]["forecast"].items() if k != "predicted_prices"} == {
        k: v for k, v in direct.items() if k != "predicted_prices"
    }
    assert lines[1]["error"].startswith("Missing required columns: emb_0")
    assert lines[3]["error"] == "Not enough data points. Need at least 20, got 5"
    assert "2 of 5 file(s) failed" in err
    assert f"{files['missing']}: HTTP 422: Missing required columns" in err
    assert f"{files['short']}: HTTP 422: Not enough data points" in err
    assert str(files["good_a"]) not in err


def test_csv_output_and_plots(torchserve, files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(bulk.TOKEN_ENV, torchserve.keys["inference"])  # the token from the environment
    good = [str(files[name]) for name in ("good_a", "good_b", "good_c")]
    out, plots = tmp_path / "out.csv", tmp_path / "plots"
    code = bulk.main([*good, *real_args(torchserve, "--format", "csv", "--output", str(out), "--plot", str(plots))])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [row["file"] for row in rows] == good
    assert list(rows[0]) == [
        "file",
        "status",
        "model",
        "model_version",
        "current_price",
        "price_1",
        "price_2",
        "price_3",
        "price_4",
        "price_5",
        "error",
    ]
    for row in rows:
        assert row["status"] == "200" and row["model"] == "tiny" and row["error"] == ""
        assert all(float(row[f"price_{k}"]) > 0 for k in range(1, 6))
    pngs = sorted(plots.iterdir())
    assert [p.name for p in pngs] == ["good_a.png", "good_b.png", "good_c.png"]
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_a_wrong_env_token_fails_with_the_servers_message(torchserve, files, monkeypatch, capsys):
    monkeypatch.setenv(bulk.TOKEN_ENV, "not-the-key")
    code = bulk.main([str(files["good_a"]), *real_args(torchserve)])
    err = capsys.readouterr().err
    assert code == 1
    assert "HTTP 400: Token Authorization failed" in err and bulk.TOKEN_ENV in err


def test_the_cli_as_a_program_with_its_progress_bar(torchserve, files):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "client.py"),
            str(files["good_a"]),
            str(files["missing"]),
            "--url",
            torchserve.inference_url,
            "--model",
            "tiny",
            "--token-file",
            key_file(torchserve),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 1, done.stderr
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == [200, 422]
    assert "forecast: 100%" in done.stderr and "2/2" in done.stderr
    assert "1 of 2 file(s) failed" in done.stderr


# -- against a scripted local server: retries and key rotation --------------------------------


FORECAST = {
    "predicted_prices": [1.0, 2.0],
    "prediction_horizon": 2,
    "current_price": 1.5,
    "model": "m",
    "model_version": "1.0",
}
BUSY = {
    "code": 503,
    "type": "ServiceUnavailableException",
    "message": 'Model "m" has no worker to serve inference request. Please use scale workers API to add workers.',
}  # noqa: E501


def scripted_args(server: Scripted, *extra: str) -> list[str]:
    return ["--url", server.url, "--model", "m/1.0", "--no-progress", "--backoff", "0.01", *extra]


@pytest.fixture
def one_file(tmp_path) -> str:
    path = tmp_path / "w.csv"
    path.write_bytes(b"emb_0,last_price\n1,2\n")
    return str(path)


def test_503_and_507_are_retried_until_the_forecast(one_file, capsys, monkeypatch):
    monkeypatch.setenv(bulk.TOKEN_ENV, "k")
    with Scripted([(503, BUSY), (507, {"code": 507, "message": "Out of resources"}), (200, FORECAST)]).running() as s:
        code = bulk.main([one_file, *scripted_args(s)])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out) == {"file": one_file, "status": 200, "forecast": FORECAST}
    assert s.seen == ["Bearer k"] * 3


def test_retries_stop_after_the_limit_with_the_servers_message(one_file, capsys, monkeypatch):
    monkeypatch.setenv(bulk.TOKEN_ENV, "k")
    with Scripted([(503, BUSY)]).running() as s:
        code = bulk.main([one_file, *scripted_args(s, "--retries", "2")])
    assert code == 1 and len(s.seen) == 3
    assert f"{one_file}: HTTP 503: {BUSY['message']}" in capsys.readouterr().err


@pytest.mark.parametrize("status", [400, 404, 422, 500])
def test_4xx_and_500_are_never_retried(one_file, capsys, monkeypatch, status):
    monkeypatch.setenv(bulk.TOKEN_ENV, "k")
    with Scripted([(status, {"error": f"refused {status}", "code": status}), (200, FORECAST)]).running() as s:
        code = bulk.main([one_file, *scripted_args(s)])
    assert code == 1 and len(s.seen) == 1
    assert f"HTTP {status}: refused {status}" in capsys.readouterr().err


#: TorchServe's own answer when the worker holding the request stopped (scale-down, killed worker).
WORKER_DIED = {"code": 500, "type": "InternalServerException", "message": "Worker died."}


def test_torchserves_worker_died_is_retried_the_handlers_500_is_not(one_file, capsys, monkeypatch):
    monkeypatch.setenv(bulk.TOKEN_ENV, "k")
    script = [(500, WORKER_DIED), (507, {**WORKER_DIED, "code": 507}), (200, FORECAST)]
    with Scripted(script).running() as s:
        code = bulk.main([one_file, *scripted_args(s)])
    assert code == 0 and json.loads(capsys.readouterr().out)["forecast"] == FORECAST
    assert len(s.seen) == 3
    # The same status with the handler's own body is this file's failure: never resent.
    with Scripted([(500, {"error": "Internal error while forecasting", "code": 500}), (200, FORECAST)]).running() as s:
        code = bulk.main([one_file, *scripted_args(s)])
    assert code == 1 and len(s.seen) == 1
    assert "HTTP 500: Internal error while forecasting" in capsys.readouterr().err


def test_a_read_timeout_is_retried_once(one_file, capsys, monkeypatch):
    monkeypatch.setenv(bulk.TOKEN_ENV, "k")
    with Scripted([(200, FORECAST, 1.5), (200, FORECAST)]).running() as s:
        code = bulk.main([one_file, *scripted_args(s, "--timeout", "0.5")])
    assert code == 0 and len(s.seen) == 2, capsys.readouterr().err
    capsys.readouterr()
    with Scripted([(200, FORECAST, 1.5)]).running() as s:  # slow every time: reported after two tries
        code = bulk.main([one_file, *scripted_args(s, "--timeout", "0.5")])
    assert code == 1 and len(s.seen) == 2
    assert "no answer: no answer within 0.5 s, twice (raise --timeout)" in capsys.readouterr().err


def test_connection_errors_are_retried_then_reported(one_file, capsys, monkeypatch):
    monkeypatch.setenv(bulk.TOKEN_ENV, "k")
    port = free_ports(1)[0]  # nothing listens there
    code = bulk.main(
        [
            one_file,
            "--url",
            f"http://127.0.0.1:{port}",
            "--model",
            "m",
            "--no-progress",
            "--backoff",
            "0.01",
            "--retries",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "no answer: cannot connect" in err and "after 3 attempt(s)" in err


def test_a_rotated_key_is_read_again_from_the_key_file(one_file, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(bulk.TOKEN_ENV, raising=False)
    keys = tmp_path / "key_file.json"
    keys.write_text(json.dumps({"inference": {"key": "old"}, "management": {"key": "m"}}))

    def rotate():
        keys.write_text(json.dumps({"inference": {"key": "new"}, "management": {"key": "m"}}))

    with Scripted([(200, FORECAST)], accept_token="new", on_refused=rotate).running() as s:
        code = bulk.main([one_file, *scripted_args(s, "--token-file", str(keys))])
    assert code == 0, capsys.readouterr().err
    assert s.seen == ["Bearer old", "Bearer new"]

    # A key that stays wrong: read again once, then the server's message (no loop).
    keys.write_text(json.dumps({"inference": {"key": "stale"}}))
    with Scripted([(200, FORECAST)], accept_token="other").running() as s:
        code = bulk.main([one_file, *scripted_args(s, "--token-file", str(keys))])
    assert code == 1 and s.seen == ["Bearer stale"]
    assert "HTTP 400: Token Authorization failed" in capsys.readouterr().err


def test_bad_token_file_and_unreadable_input(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(bulk.TOKEN_ENV, raising=False)
    assert bulk.main([str(tmp_path / "x.csv"), "--model", "m", "--token-file", str(tmp_path / "none.json")]) == 2
    assert "cannot read the token file" in capsys.readouterr().err
    monkeypatch.setenv(bulk.TOKEN_ENV, "k")
    with Scripted([(200, FORECAST)]).running() as s:
        code = bulk.main([str(tmp_path / "missing.csv"), *scripted_args(s)])
    assert code == 1 and s.seen == []
    assert "missing.csv: no answer: cannot read the file" in capsys.readouterr().err
