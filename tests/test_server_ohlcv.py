"""The real server with raw daily prices: the default model (feature pipeline inside its
checkpoint) registered on the session TorchServe, sent the committed OHLCV example."""

from __future__ import annotations

import pytest

from alm_forecaster.forecaster import Forecaster
from alm_ops import archive
from alm_ops.launcher import TorchServe
from tests.helpers import ROOT

MODEL = "sp500_xlstm"
CHECKPOINT = ROOT / "models" / f"{MODEL}.pt"
OHLCV = ROOT / "examples" / "sp500_tail.csv"
EMBEDDINGS = ROOT / "examples" / "sp500_tail_embeddings.csv"


@pytest.fixture(scope="module")
def served(torchserve: TorchServe):
    """The shipped model's archive (archive_configs/sp500_xlstm.yaml) on the session server; other
    modules (tests/test_readme_served.py) may have registered it already."""
    if not torchserve.manage("GET", f"/models/{MODEL}").ok:
        argv = ["--model", MODEL, "--export-path", str(torchserve.model_store)]
        assert archive.main(argv) == 0
    torchserve.checkpoints[MODEL] = CHECKPOINT
    torchserve.ensure_model(MODEL)
    return torchserve


def test_ohlcv_upload_gives_the_offline_forecast_and_matches_embeddings(served):
    offline = Forecaster.from_checkpoint(CHECKPOINT, name=MODEL, device="cpu")
    expected = offline.predict([OHLCV.read_bytes()])[0].body
    response = served.predict(MODEL, files={"data": ("sp500_tail.csv", OHLCV.read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predicted_prices"] == pytest.approx(expected["predicted_prices"], rel=1e-6)
    assert body["current_price"] == expected["current_price"] and body["prediction_horizon"] == 5
    as_embeddings = served.predict(MODEL, data=EMBEDDINGS.read_bytes(), headers={"Content-Type": "text/csv"})
    assert as_embeddings.status_code == 200, as_embeddings.text
    assert as_embeddings.json()["predicted_prices"] == pytest.approx(body["predicted_prices"], rel=1e-6)


def test_short_ohlcv_upload_says_how_many_rows_are_needed(served):
    lines = OHLCV.read_text().splitlines()
    short = "\n".join(lines[:1] + lines[-50:]) + "\n"
    response = served.predict(MODEL, data=short, headers={"Content-Type": "text/csv"})
    assert response.status_code == 422, response.text
    assert "Need at least 80, got 50" in response.text


def test_a_model_without_pipeline_refuses_ohlcv(served):
    response = served.predict("tiny", data=OHLCV.read_bytes(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 422, response.text
    assert "no feature pipeline" in response.text
