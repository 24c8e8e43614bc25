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
from alm_forecaster.response import forecast_response
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
    (result,) = forecaster.predict([data])
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
    assert isinstance(results[1], InputError) and results[1].status == 400
    assert isinstance(results[4], InputError) and results[4].message.endswith("Need at least 20, got 12")
    served = [r for r in results if not isinstance(r, InputError)]
    for good, result in zip(goods, served, strict=True):
        (alone,) = forecaster.predict([good])
        np.testing.assert_allclose(result["predicted_prices"], alone["predicted_prices"], rtol=1e-6)


def test_all_bad_batch(forecaster):
    results = forecaster.predict([b"x", b"{}"])
    assert [type(r) for r in results] == [InputError, InputError]


def test_non_finite_output_is_refused():
    with pytest.raises(InputError, match="non-finite forecast"):
        forecast_response(np.array([0.1, np.inf]), 10.0, "m", "1")


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
    assert result["prediction_horizon"] == 5


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
    expected = forecaster.predict([f.read_bytes() for f in files])
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
