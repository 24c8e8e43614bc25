"""Training: targets, chronological split, training-span-only fitting, reproducibility, the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alm_forecaster import ohlcv
from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.ohlcv_features import LOOKBACK
from alm_forecaster.train import datasets
from alm_forecaster.train.training import (
    TrainConfig,
    _fold_target_scale,
    chronological_split,
    prepare,
    return_targets,
    sample_ends,
    split_at,
    train,
)

#: Small enough for a few seconds: ~250 training windows, a tiny network, 2 epochs.
TINY = TrainConfig(input_size=8, hidden_size=8, num_layers=1, num_blocks=2, horizon=3, epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def sp500():
    return datasets.load_arch("sp500")


@pytest.fixture(scope="module")
def small(sp500):
    return datasets.slice_rows(sp500, 1000, 1500)


def test_return_targets_by_hand():
    prices = np.array([100.0, 110.0, 99.0, 120.0])
    got = return_targets(prices, offset=1, horizon=2)
    expected = [[0.10, -0.01], [-0.1, 120 / 110 - 1], [120 / 99 - 1, np.nan], [np.nan, np.nan]]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(
        return_targets(prices, offset=2, horizon=1)[:, 0], [-0.01, 120 / 110 - 1, np.nan, np.nan]
    )


def test_sample_ends_need_a_full_window_and_every_target():
    ends = sample_ends(n=100, first_valid=60, seq_len=20, offset=1, horizon=5)
    assert ends[0] == 79 and ends[-1] == 94
    targets = return_targets(np.linspace(1, 2, 100), 1, 5)
    assert np.isfinite(targets[ends]).all() and not np.isfinite(targets[ends[-1] + 1]).all()


def test_split_is_chronological_with_a_gap():
    ends = np.arange(100, 1100)
    split = chronological_split(ends, 0.15, 0.15, gap=5)
    assert split.train[-1] < split.val[0] < split.val[-1] < split.test[0]
    assert split.val[0] - split.train[-1] == 6 and split.test[0] - split.val[-1] == 6
    assert len(split.test) == 150 and split.test[-1] == 1099
    again = split_at(ends, int(split.train[-1]), int(split.val[-1]), gap=5)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(again, name), getattr(split, name))


def test_no_training_target_reaches_the_validation_span(small):
    cfg = TINY
    prep = prepare(small, cfg)
    last_target_row = prep.split.train[-1] + cfg.prediction_offset + cfg.horizon - 1
    assert last_target_row < prep.split.val[0]


def test_pipeline_is_fitted_on_the_training_span_only(small):
    prep = prepare(small, TINY)
    cut = int(prep.split.train[-1])
    bars = small.bars
    rng = np.random.default_rng(0)
    noise = np.exp(rng.normal(0, 0.05, len(bars)))
    noise[: cut + 1] = 1.0
    changed = ohlcv.from_arrays(
        bars.dates,
        bars.open * noise,
        bars.high * noise,
        bars.low * noise,
        bars.close * noise,
        bars.volume * noise,
    )
    other = datasets.Series("x", "", changed.close, changed.raw_close, changed.dates, bars=changed)
    prep2 = prepare(other, TINY)
    np.testing.assert_array_equal(prep2.split.train, prep.split.train)
    for key in ("mean", "std", "components", "scale"):
        np.testing.assert_array_equal(getattr(prep2.pipeline, key), getattr(prep.pipeline, key))
    assert prep.pipeline.fit_span["end"] == str(bars.dates[cut])
    np.testing.assert_array_equal(prep.embeddings[: cut + 1], prep2.embeddings[: cut + 1])


def test_training_is_reproducible(small):
    torch.set_num_threads(1)
    a = train(small, TINY, progress=False).checkpoint
    b = train(small, TINY, progress=False).checkpoint
    assert a["model_state_dict"].keys() == b["model_state_dict"].keys()
    for name, tensor in a["model_state_dict"].items():
        assert torch.equal(tensor, b["model_state_dict"][name]), name
    for key, value in a["feature_pipeline"].items():
        other = b["feature_pipeline"][key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other
    assert a["metadata"] == b["metadata"]
    c = train(small, TrainConfig(**{**TINY.__dict__, "seed": 1}), progress=False).checkpoint
    assert not torch.equal(
        c["model_state_dict"]["input_projection.0.weight"], a["model_state_dict"]["input_projection.0.weight"]
    )


def test_the_checkpoint_is_seed_format_with_metadata_and_serves_prices(small, tmp_path):
    result = train(small, TINY, progress=False)
    path = tmp_path / "tiny.pt"
    torch.save(result.checkpoint, path)
    torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert loaded.config.output_size == 3 and loaded.config.input_size == 8 and loaded.warnings == []
    assert set(result.checkpoint["config"]) == {
        "input_size",
        "hidden_size",
        "num_layers",
        "num_blocks",
        "output_size",
        "dropout",
        "prediction_horizon",
    }
    meta = loaded.metadata
    assert meta["seq_len"] == 20 and meta["prediction_offset"] == 1 and meta["block_pattern"] == "sm"
    assert meta["data"]["sha256"] == small.sha256 and meta["seed"] == 0
    assert meta["spans"]["train"]["end"] < meta["spans"]["val"]["start"] < meta["spans"]["test"]["start"]
    assert meta["feature_pipeline"]["rows_needed"] == LOOKBACK + 20
    assert {"torch", "numpy", "python"} <= set(meta["versions"])
    assert len(meta["metrics"]["test"]["rmse"]) == 3
    forecaster = Forecaster(loaded, "tiny", device=torch.device("cpu"))
    frame = datasets.frame("sp500").iloc[1400:1500]
    [outcome] = forecaster.predict([frame.to_csv(date_format="%Y-%m-%d").encode()])
    response = outcome.body
    assert response["current_price"] == float(frame["Close"].iloc[-1]) and len(response["predicted_prices"]) == 3


def test_training_from_an_embeddings_csv(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    emb = rng.normal(size=(n, 4))
    price = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    lines = [",".join([f"emb_{i}" for i in range(4)] + ["last_price"])]
    lines += [",".join([repr(float(v)) for v in row] + [repr(float(p))]) for row, p in zip(emb, price, strict=True)]
    path = tmp_path / "emb.csv"
    path.write_text("\n".join(lines) + "\n")
    series = datasets.load_csv(path)
    assert series.embeddings.shape == (n, 4) and series.bars is None
    cfg = TrainConfig(input_size=4, hidden_size=8, num_layers=1, num_blocks=1, horizon=2, epochs=1)
    checkpoint = train(series, cfg, progress=False).checkpoint
    assert "feature_pipeline" not in checkpoint and checkpoint["metadata"]["inputs"] == "embeddings"
    assert checkpoint["metadata"]["spans"]["train"]["start"] == "row 20"


def test_folding_the_target_scale_makes_the_head_output_returns():
    from alm_forecaster.config import ModelConfig
    from alm_forecaster.model import XLSTMForecaster

    torch.manual_seed(0)
    model = XLSTMForecaster(ModelConfig(input_size=4, hidden_size=8, num_layers=1, num_blocks=1, output_size=3)).eval()
    x = torch.randn(5, 20, 4)
    with torch.no_grad():
        before = model(x)
    mu, sigma = np.array([0.001, 0.002, 0.003]), np.array([0.01, 0.02, 0.03])
    _fold_target_scale(model, mu, sigma)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(
        after, before * torch.tensor(sigma, dtype=torch.float32) + torch.tensor(mu, dtype=torch.float32)
    )
