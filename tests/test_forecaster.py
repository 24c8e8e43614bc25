"""Bytes in, forecasts out: batching, per-request errors, responses and the offline CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from alm_forecaster.errors import InputError
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.outcome import Outcome
from alm_forecaster.testing.synthetic import TINY, embeddings_csv, write_checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", TINY, seed=7)


@pytest.fixture(scope="module")
def forecaster(checkpoint) -> Forecaster:
    return Forecaster.from_checkpoint(checkpoint, name="tiny", version="2.1", device="cpu")


def test_response_is_prices_from_returns(forecaster):
    data = embeddings_csv(rows=30, input_size=TINY.input_size, seed=1)
    (outcome,) = forecaster.predict([data])
    assert (outcome.status, outcome.reason, outcome.ok) == (200, None, True)
    result = outcome.body
    window = forecaster.parse(data)
    with torch.inference_mode():
        returns = forecaster.model(torch.from_numpy(window.embeddings)[None])[0].double().numpy()
    assert result["current_price"] == window.current_price
    np.testing.assert_allclose(result["predicted_prices"], window.current_price * (1 + returns), rtol=1e-12)
    assert result["prediction_horizon"] == 5 == len(result["predicted_prices"])
    assert (result["model"], result["model_version"]) == ("tiny", "2.1")


def test_bad_requests_fail_alone_and_batch_mates_match_single_forecasts(forecaster):
    goods = [embeddings_csv(rows=20 + i, input_size=TINY.input_size, seed=i) for i in range(6)]
    bads = {1: b"", 4: embeddings_csv(rows=12, input_size=TINY.input_size)}
    payloads = list(goods)
    for index, bad in bads.items():
        payloads.insert(index, bad)
    results = forecaster.predict(payloads)
    assert len(results) == len(payloads)
    assert (results[1].status, results[1].reason) == (400, "empty")
    assert (results[4].status, results[4].reason) == (422, "too_few_rows")
    assert results[4].body == {"error": "Not enough data points. Need at least 20, got 12", "code": 422}
    served = [r for r in results if r.ok]
    assert [r.status for r in served] == [200] * len(goods)
    for good, result in zip(goods, served, strict=True):
        (alone,) = forecaster.predict([good])
        np.testing.assert_allclose(result.body["predicted_prices"], alone.body["predicted_prices"], rtol=1e-6)


def test_all_bad_batch(forecaster):
    results = forecaster.predict([b"x", b"{}"])
    assert [(r.status, r.reason) for r in results] == [(422, "missing_columns"), (400, "not_csv")]
    missing = "Missing required columns: emb_0, emb_1, emb_2, emb_3, emb_4, emb_5, emb_6, emb_7 and 1 more (9 in all)."
    json_body = "The body looks like JSON; this endpoint expects a CSV file."
    assert [r.body for r in results] == [{"error": missing, "code": 422}, {"error": json_body, "code": 400}]


def test_a_batch_whose_forward_fails_is_retried_window_by_window(forecaster, monkeypatch):
    payloads = [embeddings_csv(rows=20, input_size=TINY.input_size, seed=seed) for seed in (1, 2, 3)]
    alone = [forecaster.predict([payload])[0] for payload in payloads]
    poison = forecaster.parse(payloads[1]).current_price
    forward = forecaster.pipeline.forward

    def fragile(windows):
        if len(windows) > 1:
            raise MemoryError()
        if windows[0].current_price == poison:
            raise RuntimeError("boom")
        return forward(windows)

    monkeypatch.setattr(forecaster.pipeline, "forward", fragile)
    outcomes = forecaster.predict(payloads)
    assert [(o.status, o.reason) for o in outcomes] == [(200, None), (500, "internal"), (200, None)]
    assert "(RuntimeError: boom); it has been logged." in outcomes[1].body["error"]
    assert outcomes[1].body["code"] == 500
    for outcome, single in zip([outcomes[0], outcomes[2]], [alone[0], alone[2]], strict=True):
        np.testing.assert_allclose(outcome.body["predicted_prices"], single.body["predicted_prices"], rtol=1e-6)


def test_outcome_of_each_kind_of_error():
    refused = Outcome.from_error(InputError("too short", reason="too_few_rows"))
    assert refused == Outcome(422, {"error": "too short", "code": 422}, "too_few_rows") and not refused.ok
    for exc in (MemoryError(), RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")):
        full = Outcome.from_error(exc)
        assert (full.status, full.reason, full.body["code"]) == (507, "out_of_memory", 507)
        assert full.body["error"].startswith("The server ran out of memory for this request")
    internal = Outcome.from_error(KeyError("x"))
    assert internal == Outcome(
        500,
        {"error": "Internal error while forecasting this request (KeyError: 'x'); it has been logged.", "code": 500},
        "internal",
    )
    assert Outcome(200, {"predicted_prices": [1.0]}).ok


def test_non_finite_output_is_refused_alone(forecaster, monkeypatch):
    payloads = [embeddings_csv(rows=20, input_size=TINY.input_size, seed=seed) for seed in (1, 2)]
    forward = forecaster.pipeline.forward

    def overflowing(windows):
        raw = forward(windows)
        raw[1, 1] = np.inf
        return raw

    monkeypatch.setattr(forecaster.pipeline, "forward", overflowing)
    good, bad = forecaster.predict(payloads)
    assert good.ok and (bad.status, bad.reason) == (422, "non_finite_output")
    assert "non-finite forecast" in bad.body["error"]


def test_describe_names_what_operators_need(forecaster, checkpoint):
    info = forecaster.describe()
    assert info["block_pattern"] == "sms" and info["seq_len"] == 20 and info["predicted_steps"] == 5
    assert info["parameter_count"] == sum(p.numel() for p in forecaster.model.parameters())
    assert info["device"] == "cpu"
    import hashlib

    assert info["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert info["config_disagreements"] == []


def test_horizon_disagreement_is_in_describe(tmp_path):
    path = write_checkpoint(tmp_path / "odd.pt", TINY, declared_output_size=1)
    fc = Forecaster.from_checkpoint(path, device="cpu")
    assert fc.describe()["config_disagreements"] == [
        "config says output_size=1 but the head predicts 5 steps; serving 5"
    ]
    (result,) = fc.predict([embeddings_csv(input_size=TINY.input_size)])
    assert result.body["prediction_horizon"] == 5


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "forecast.py"), *args], capture_output=True, text=True, timeout=120
    )


def test_cli_prints_one_response_per_file_in_order(tmp_path, checkpoint, forecaster):
    files = []
    for i in range(3):
        path = tmp_path / f"f{i}.csv"
        path.write_bytes(embeddings_csv(rows=22, input_size=TINY.input_size, seed=10 + i))
        files.append(path)
    proc = run_cli("--checkpoint", str(checkpoint), "--name", "tiny", "--version", "2.1", *map(str, files))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = [outcome.body for outcome in forecaster.predict([f.read_bytes() for f in files])]
    assert lines == json.loads(json.dumps(expected))


def test_cli_reports_bad_files_and_continues(tmp_path, checkpoint):
    good = tmp_path / "good.csv"
    good.write_bytes(embeddings_csv(input_size=TINY.input_size))
    short = tmp_path / "short.csv"
    short.write_bytes(embeddings_csv(rows=15, input_size=TINY.input_size))
    missing = tmp_path / "missing.csv"
    proc = run_cli("--checkpoint", str(checkpoint), str(short), str(good), str(missing))
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 1
    assert f"{short}: Not enough data points. Need at least 20, got 15" in proc.stderr
    assert f"{missing}: cannot read the file" in proc.stderr
    assert "2 of 3 files failed" in proc.stderr


def test_cli_refuses_a_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    proc = run_cli("--checkpoint", str(bad), str(bad))
    assert proc.returncode == 2
    assert f"{bad}: not a readable PyTorch checkpoint" in proc.stderr


def test_cli_without_a_checkpoint_forecasts_with_the_served_default_model():
    """A newcomer's first call: scripts/forecast.py FILE, the model config.properties starts first."""
    proc = run_cli(str(ROOT / "examples" / "nasdaq_close.csv"))
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["model"] == "alm_quantiles" and set(answer["quantiles"]) == {"0.05", "0.25", "0.5", "0.75", "0.95"}
    level = json.loads(run_cli("--kind", "level", str(ROOT / "examples" / "ust_3m.csv")).stdout)
    price = json.loads(run_cli(str(ROOT / "examples" / "ust_3m.csv")).stdout)
    assert level["current_price"] == price["current_price"] == 0.04 and level["quantiles"] != price["quantiles"]
    refused = run_cli("--kind", "rate", str(ROOT / "examples" / "ust_3m.csv"))
    assert refused.returncode == 1 and "'rate' is not a series kind" in refused.stderr
