"""The OHLCV feature pipeline: causality, finite lookback, request validation, checkpoint state."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alm_forecaster import ohlcv
from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.contract import embedding_columns
from alm_forecaster.errors import CheckpointError, InputError
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.ohlcv_features import FEATURE_NAMES, LOOKBACK, FeaturePipeline, looks_like_ohlcv, technical_features
from alm_forecaster.table import read_table
from alm_forecaster.train import datasets

SEQ_LEN = 20


@pytest.fixture(scope="module")
def frame():
    return datasets.frame("sp500").iloc[:900]


@pytest.fixture(scope="module")
def bars(frame):
    return ohlcv.from_frame(frame)


@pytest.fixture(scope="module")
def pipeline(bars):
    features, _ = technical_features(bars)
    return FeaturePipeline.fit(features[:600], 16, bars.dates[:600])


def csv_bytes(frame) -> bytes:
    return frame.to_csv(date_format="%Y-%m-%d").encode()


def synthetic_bars(seed: int, n: int) -> ohlcv.OHLCV:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.005, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.005, n)))
    volume = rng.integers(0, 10**6, n).astype(float)
    dates = np.datetime64("2001-01-01") + np.cumsum(rng.integers(1, 4, n))
    return ohlcv.from_arrays(dates, open_, high, low, close, volume)


def replace_after(bars: ohlcv.OHLCV, row: int, other: ohlcv.OHLCV) -> ohlcv.OHLCV:
    """``bars`` up to ``row`` (inclusive), ``other``'s values afterwards (same dates)."""

    def mix(a, b):
        out = a.copy()
        out[row + 1 :] = b[row + 1 :]
        return out

    return ohlcv.from_arrays(
        bars.dates,
        mix(bars.open, other.open),
        mix(bars.high, other.high),
        mix(bars.low, other.low),
        mix(bars.close, other.close),
        mix(bars.volume, other.volume),
    )


# ----------------------------------------------------------------------------- causality


@pytest.mark.parametrize("row", [LOOKBACK, LOOKBACK + 7, 300, 598])
def test_changing_future_rows_changes_no_earlier_feature_or_embedding(bars, pipeline, row):
    scrambled = replace_after(bars, row, synthetic_bars(1, len(bars)))
    a, _ = technical_features(bars)
    b, _ = technical_features(scrambled)
    np.testing.assert_array_equal(a[: row + 1], b[: row + 1])
    assert not np.array_equal(a[row + 1 :], b[row + 1 :])
    np.testing.assert_array_equal(pipeline.embed(bars)[: row + 1], pipeline.embed(scrambled)[: row + 1])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), row=st.integers(LOOKBACK, 250))
def test_causality_on_random_series(seed, row):
    base = synthetic_bars(seed, 260)
    other = synthetic_bars(seed + 1, 260)
    a, _ = technical_features(base)
    b, _ = technical_features(replace_after(base, row, other))
    np.testing.assert_array_equal(a[: row + 1], b[: row + 1])


def test_a_day_depends_only_on_its_lookback_rows(bars):
    """Finite lookback: day t's features from rows t-LOOKBACK..t equal those from all history."""
    full, _ = technical_features(bars)
    for t in (LOOKBACK, 200, 899):
        short, _ = technical_features(bars.rows(t - LOOKBACK, t + 1))
        np.testing.assert_allclose(short[-1], full[t], rtol=1e-12, atol=1e-15)
        assert np.isnan(technical_features(bars.rows(t - LOOKBACK + 1, t + 1))[0][-1]).all()


def test_features_are_complete_and_finite_after_the_lookback(bars):
    features, names = technical_features(bars)
    assert names == FEATURE_NAMES and features.shape == (len(bars), len(FEATURE_NAMES))
    assert np.isnan(features[:LOOKBACK]).all()
    assert np.isfinite(features[LOOKBACK:]).all()


def test_features_are_scale_free(bars):
    scaled = ohlcv.from_arrays(
        bars.dates, bars.open * 7.5, bars.high * 7.5, bars.low * 7.5, bars.close * 7.5, bars.volume * 3
    )
    a, names = technical_features(bars)
    b, _ = technical_features(scaled)
    volume = [i for i, n in enumerate(names) if n.startswith("volume")]
    price = [i for i in range(len(names)) if i not in volume]
    np.testing.assert_allclose(a[:, price], b[:, price], rtol=1e-7, atol=1e-10)


def test_degenerate_bars_give_finite_features():
    n = LOOKBACK + 30
    flat = np.full(n, 10.0)
    dates = np.datetime64("2020-01-01") + np.arange(n)
    bars = ohlcv.from_arrays(dates, flat, flat, flat, flat, np.zeros(n))
    features, _ = technical_features(bars)
    assert np.isfinite(features[LOOKBACK:]).all()


# ----------------------------------------------------------------------------- pipeline fit


def test_pipeline_is_fitted_only_on_the_rows_it_is_given(bars):
    features, _ = technical_features(bars)
    scrambled, _ = technical_features(replace_after(bars, 599, synthetic_bars(3, len(bars))))
    a = FeaturePipeline.fit(features[:600], 16)
    b = FeaturePipeline.fit(scrambled[:600], 16)
    for key in ("mean", "std", "pca_mean", "components", "scale"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


def test_embeddings_are_whitened_on_the_fit_span(bars, pipeline):
    emb = pipeline.embed(bars)[LOOKBACK:600]
    assert emb.shape[1] == 16
    np.testing.assert_allclose(emb.std(axis=0, ddof=1), 1.0, rtol=0.02)


def test_fit_rejects_more_dims_than_features(bars):
    features, _ = technical_features(bars)
    with pytest.raises(ValueError, match="between 1 and"):
        FeaturePipeline.fit(features, len(FEATURE_NAMES) + 1)


# ----------------------------------------------------------------------------- requests


def test_window_matches_the_training_embeddings(frame, bars, pipeline):
    table = read_table(csv_bytes(frame.iloc[-(LOOKBACK + SEQ_LEN) :]))
    window = pipeline.window(table, SEQ_LEN)
    np.testing.assert_array_equal(window.embeddings, pipeline.embed(bars)[-SEQ_LEN:].astype(np.float32))
    assert window.embeddings.dtype == np.float32 and window.embeddings.shape == (SEQ_LEN, 16)
    assert window.current_price == float(frame["Close"].iloc[-1])


def test_window_uses_only_the_last_rows_it_needs(frame, pipeline):
    long = pipeline.window(read_table(csv_bytes(frame)), SEQ_LEN)
    short = pipeline.window(read_table(csv_bytes(frame.iloc[-(LOOKBACK + SEQ_LEN) :])), SEQ_LEN)
    np.testing.assert_array_equal(long.embeddings, short.embeddings)
    # a bad value outside the rows read does not matter
    text = csv_bytes(frame).decode().splitlines()
    text[5] = text[5].replace(text[5].split(",")[1], "oops", 1)
    assert np.array_equal(pipeline.window(read_table("\n".join(text)), SEQ_LEN).embeddings, long.embeddings)


def test_too_few_rows_says_how_many_are_needed(frame, pipeline):
    table = read_table(csv_bytes(frame.iloc[-50:]))
    with pytest.raises(InputError, match=r"Need at least 80, got 50") as info:
        pipeline.window(table, SEQ_LEN)
    assert "60 days before it" in info.value.message and info.value.reason == "too_few_rows"


def test_header_is_case_insensitive_and_adj_close_optional(frame, pipeline):
    tail = frame.iloc[-(LOOKBACK + SEQ_LEN) :].drop(columns=["Adj Close"])
    expected = pipeline.window(read_table(csv_bytes(tail)), SEQ_LEN)
    renamed = tail.rename(columns=str.upper).rename_axis("date")
    got = pipeline.window(read_table(csv_bytes(renamed)), SEQ_LEN)
    np.testing.assert_array_equal(got.embeddings, expected.embeddings)


def test_adj_close_adjusts_prices_but_current_price_is_the_close(frame, pipeline):
    tail = frame.iloc[-(LOOKBACK + SEQ_LEN) :].copy()
    plain = pipeline.window(read_table(csv_bytes(tail.drop(columns=["Adj Close"]))), SEQ_LEN)
    tail["Adj Close"] = tail["Close"] * 0.5  # a constant adjustment changes no scale-free feature
    halved = pipeline.window(read_table(csv_bytes(tail)), SEQ_LEN)
    np.testing.assert_allclose(halved.embeddings, plain.embeddings, rtol=1e-5, atol=1e-5)
    assert halved.current_price == plain.current_price == float(tail["Close"].iloc[-1])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f.drop(columns=["Volume", "Low"]), r"Missing required OHLCV columns: Low, Volume"),
        (lambda f: f.assign(Close=f["Close"].where(f.index != f.index[-3], -1.0)), r"Row 78 .*'Close'.*positive"),
        (lambda f: f.assign(High=f["Low"] - 1), r"Row 1 .*High .* is below Low"),
        (lambda f: f.assign(Volume=f["Volume"].where(f.index != f.index[10], -5)), r"Row 11 .*'Volume'.*>= 0"),
        (lambda f: f.iloc[::-1], r"strictly increasing.*newest-first"),
    ],
)
def test_bad_requests_name_the_problem(frame, pipeline, edit, message):
    tail = edit(frame.iloc[-(LOOKBACK + SEQ_LEN) :].copy())
    with pytest.raises(InputError, match=message):
        pipeline.window(read_table(csv_bytes(tail)), SEQ_LEN)


def test_bad_cells_are_named_with_row_line_and_column(frame, pipeline):
    lines = csv_bytes(frame.iloc[-(LOOKBACK + SEQ_LEN) :]).decode().splitlines()
    cells = lines[41].split(",")
    cells[4] = "12,5"
    lines[41] = ",".join(cells[:4]) + ',"12,5",' + ",".join(cells[5:])
    with pytest.raises(InputError, match=r"Row 41 \(line 42\), column 'Close': '12,5' is not a number"):
        pipeline.window(read_table("\n".join(lines)), SEQ_LEN)
    lines = csv_bytes(frame.iloc[-(LOOKBACK + SEQ_LEN) :]).decode().splitlines()
    lines[3] = "03/01/2018" + lines[3][10:]
    with pytest.raises(InputError, match=r"Row 3 \(line 4\), column 'Date': '03/01/2018' is not an ISO date"):
        pipeline.window(read_table("\n".join(lines)), SEQ_LEN)


def test_looks_like_ohlcv():
    assert looks_like_ohlcv(["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"])
    assert looks_like_ohlcv(["date", "close"])  # routed to the pipeline, which names what is missing
    assert not looks_like_ohlcv(embedding_columns(4) + ["last_price"])
    assert not looks_like_ohlcv(["emb_0", "close", "date"])
    assert not looks_like_ohlcv(["price"])


# ----------------------------------------------------------------------------- checkpoint state


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory, pipeline):
    from alm_forecaster.config import ModelConfig
    from alm_forecaster.testing.synthetic import seed_checkpoint

    config = ModelConfig(input_size=16, hidden_size=8, num_layers=1, num_blocks=2, output_size=3)
    payload = seed_checkpoint(config, seed=0)
    payload["metadata"] = {"seq_len": SEQ_LEN, "prediction_offset": 1}
    payload["feature_pipeline"] = pipeline.state()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(payload, path)
    return path


def test_pipeline_round_trips_through_a_weights_only_checkpoint(checkpoint_path, pipeline, bars):
    torch.load(checkpoint_path, weights_only=True)  # plain values and tensors only
    loaded = load_checkpoint(checkpoint_path)
    restored = FeaturePipeline.from_state(loaded.feature_pipeline)
    for key in ("mean", "std", "pca_mean", "components", "scale"):
        np.testing.assert_array_equal(getattr(restored, key), getattr(pipeline, key))
    assert restored.feature_names == pipeline.feature_names and restored.fit_span == pipeline.fit_span
    np.testing.assert_array_equal(restored.embed(bars), pipeline.embed(bars))


def test_from_state_rejects_what_it_cannot_reproduce(pipeline):
    state = pipeline.state()
    with pytest.raises(CheckpointError, match="unknown kind"):
        FeaturePipeline.from_state({**state, "kind": "other"})
    with pytest.raises(CheckpointError, match="feature list differs"):
        FeaturePipeline.from_state({**state, "feature_names": state["feature_names"][:-1]})
    with pytest.raises(CheckpointError, match="'components' has shape"):
        FeaturePipeline.from_state({**state, "components": state["components"][:, :-1]})
    with pytest.raises(CheckpointError, match="finite tensor"):
        FeaturePipeline.from_state({**state, "mean": state["mean"] * float("nan")})


def test_ohlcv_and_embedding_requests_give_the_same_forecast(checkpoint_path, frame, pipeline):
    """The same day sent as raw prices and as the pipeline's embeddings: identical forecasts."""
    forecaster = Forecaster.from_checkpoint(checkpoint_path, device="cpu")
    assert forecaster.describe()["accepts"] == ["embeddings", "ohlcv"]
    tail = frame.iloc[-(LOOKBACK + SEQ_LEN) :]
    window = pipeline.window(read_table(csv_bytes(tail)), SEQ_LEN)
    buffer = io.StringIO()
    buffer.write(",".join(["date"] + embedding_columns(16) + ["last_price"]) + "\n")
    for date, row, price in zip(tail.index[-SEQ_LEN:], window.embeddings, tail["Close"].iloc[-SEQ_LEN:], strict=True):
        buffer.write(",".join([str(date.date())] + [f"{v:.9g}" for v in row] + [repr(float(price))]) + "\n")
    raw, embedded = forecaster.predict([csv_bytes(tail), buffer.getvalue().encode()])
    assert raw.ok, raw
    assert raw == embedded


def test_a_checkpoint_without_pipeline_refuses_ohlcv(tmp_path, frame):
    from alm_forecaster.config import ModelConfig
    from alm_forecaster.testing.synthetic import seed_checkpoint

    path = tmp_path / "plain.pt"
    torch.save(seed_checkpoint(ModelConfig(input_size=16, hidden_size=8, num_layers=1, num_blocks=1), 0), path)
    [result] = Forecaster.from_checkpoint(path, device="cpu").predict([csv_bytes(frame.iloc[-100:])])
    assert (result.status, result.reason) == (422, "ohlcv_unsupported")
    assert "no feature pipeline" in result.body["error"]


def test_committed_examples_give_the_same_forecast_with_the_default_model():
    """examples/sp500_tail.csv (OHLCV) and examples/sp500_tail_embeddings.csv (the same days
    through the default model's pipeline, scripts/export_data.py) forecast identically."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    model, prices, embeddings = (
        root / "models/sp500_xlstm.pt",
        root / "examples/sp500_tail.csv",
        root / "examples/sp500_tail_embeddings.csv",
    )
    forecaster = Forecaster.from_checkpoint(model, device="cpu")
    raw, embedded = forecaster.predict([prices.read_bytes(), embeddings.read_bytes()])
    assert raw.ok, raw
    assert raw == embedded
    assert raw.body["current_price"] == float(prices.read_text().splitlines()[-1].split(",")[4])


def test_prices_that_overflow_a_feature_are_a_422_naming_the_day():
    """Positive, finite but absurd prices (Close = 1e-320) overflow ratios: a 422, never a 500."""
    forecaster = Forecaster.from_checkpoint("models/sp500_xlstm.pt", device="cpu")
    lines = open("examples/sp500_tail.csv").read().splitlines()
    close = lines[0].lower().split(",").index("close")
    cells = lines[95].split(",")
    cells[close] = "1e-320"
    lines[95] = ",".join(cells)
    with np.errstate(all="ignore"):
        (result,) = forecaster.predict(["\n".join(lines).encode()])
    assert (result.status, result.reason) == (422, "bad_value")
    assert result.body["error"].startswith("Row 95 (line 96): the prices up to this day give non-finite features")
