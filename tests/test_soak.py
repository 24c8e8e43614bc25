"""The soak test's own pieces (scripts/soak.py, alm_ops/soak.py): its payloads get the statuses
it expects from the served code, for a price model (the default) and an embeddings model, and
a short real run against its own TorchServe checks every answer and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import psutil
import pytest

from alm_forecaster.forecaster import Forecaster
from alm_ops import soak_payloads
from tests.helpers import ROOT


def assert_statuses(forecaster: Forecaster, payloads: list[soak_payloads.Payload]) -> None:
    answers = forecaster.predict([p.body for p in payloads])
    wrong = [(p.name, a.status, p.status) for p, a in zip(payloads, answers, strict=True) if a.status != p.status]
    assert not wrong, wrong


def test_price_model_payloads():
    forecaster = Forecaster.from_checkpoint(ROOT / "models" / "alm_quantiles.pt", device="cpu")
    good = soak_payloads.price_payloads(forecaster.rows_needed, np.random.default_rng(0))
    bad = soak_payloads.bad_price_payloads(good[0].body, forecaster.rows_needed)
    assert len(good) >= 20 and len({p.body for p in good}) == len(good)
    assert_statuses(forecaster, good + bad)


def test_embeddings_model_payloads():
    forecaster = Forecaster.from_checkpoint(ROOT / "models" / "sp500_xlstm.pt", device="cpu")
    good = soak_payloads.good_payloads(32, 20, ["embeddings", "ohlcv"], np.random.default_rng(0))
    bad = soak_payloads.bad_payloads(next(p.body for p in good if p.name.startswith("emb-")), 20)
    assert_statuses(forecaster, good + bad)


@pytest.mark.parametrize("model", ["alm_quantiles"])
def test_short_soak_of_the_default_model(tmp_path, model):
    report = tmp_path / "soak.json"
    work = tmp_path / "tmp"
    work.mkdir()
    command = [sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "0.3", "--concurrency", "4"]
    command += ["--model", model, "--report", str(report), "--sample-seconds", "2"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "TMPDIR": str(work)}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(report.read_text())
    assert result["settings"]["model"] == model
    # What a soak checks: every answer as expected, nothing restarted. How many requests fit in
    # its 18 s is the machine's speed (docs/soak.md has the figures), not asserted here.
    assert result["ok"] > 0 and result["expected_4xx"] > 0
    assert result["requests"] == result["ok"] + result["expected_4xx"]
    assert result["unexpected"] == {} and result["worker_restarts"] == 0
    leftover = [p.pid for p in psutil.process_iter() if str(work) in " ".join(_cmdline(p))]
    assert not leftover, f"processes left running: {leftover}"


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []
