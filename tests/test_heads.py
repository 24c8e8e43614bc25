"""The heads and the rules they share, each checked against an independent computation.

* the quantile construction's two backends (torch `monotone` for training, numpy
  `QuantileHead.standardised` for serving) agree;
* the README's formula, ``quantile = current_price * exp(sigma * sqrt(h) * z[h, q])``, computed
  here from scratch (a plain EWMA loop for sigma, the network's raw outputs, a cumulative
  softplus by hand) equals what the served code path answers;
* standardised changes and their inverse, and each series kind's coordinates, round-trip.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alm_forecaster import scaling
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.heads import QuantileHead, monotone
from alm_forecaster.kinds import KINDS, PRICE
from alm_forecaster.testing.synthetic import price_csv, price_series
from tests.helpers import ROOT

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


@pytest.mark.parametrize("seed", range(5))
def test_torch_and_numpy_quantile_constructions_agree(seed):
    raw = torch.from_numpy(np.random.default_rng(seed).normal(0, 3, (64, 5 * len(LEVELS))))
    trained = monotone(raw, len(LEVELS)).numpy()
    served = QuantileHead(LEVELS, {"price": np.zeros((5, len(LEVELS)))}).standardised(raw)
    np.testing.assert_allclose(served, trained, rtol=1e-12, atol=1e-12)
    assert (np.diff(served, axis=-1) > 0).all()


def test_the_readme_formula_computed_independently():
    forecaster = Forecaster.from_checkpoint(ROOT / "models" / "alm_quantiles.pt", device="cpu")
    days, closes = price_series(300, seed=11)
    answer = forecaster.predict([price_csv(300, seed=11)])[0]
    assert answer.ok, answer.body
    # sigma: EWMA (lambda 0.94) of the last 250 squared log returns, weights renormalised
    returns = np.diff(np.log(closes))[-250:][::-1]
    weights = [0.94**j for j in range(250)]
    sigma = math.sqrt(sum(w * r * r for w, r in zip(weights, returns, strict=True)) / sum(weights))
    raw = forecaster.forward([forecaster.parse(price_csv(300, seed=11))])[0].astype(np.float64)
    head = forecaster.head
    softplus = lambda x: math.log1p(math.exp(-abs(x))) + max(x, 0.0)  # noqa: E731
    for h in range(1, head.steps + 1):
        step = raw[(h - 1) * 5 : h * 5]
        z = [0.0] * 5
        z[2] = step[2]
        z[3] = z[2] + softplus(step[3])
        z[4] = z[3] + softplus(step[4])
        z[1] = z[2] - softplus(step[1])
        z[0] = z[1] - softplus(step[0])
        z = np.maximum.accumulate(np.array(z) + head.offsets["price"][h - 1])
        for j, level in enumerate(LEVELS):
            expected = closes[-1] * math.exp(sigma * math.sqrt(h) * z[j])
            assert answer.body["quantiles"][f"{level:g}"][h - 1] == pytest.approx(expected, rel=1e-9), (h, level)
    assert answer.body["predicted_prices"] == answer.body["quantiles"]["0.5"]


def test_standardised_changes_invert():
    y = np.log(price_series(400, seed=3)[1])
    sigma = np.full(len(y), 0.01)
    z = scaling.standardised_changes(y, sigma, 5)
    origins = np.arange(300, 390)
    back = scaling.changes(z[origins][:, :, None], sigma[origins])[:, :, 0]
    expected = np.stack([y[origins + h] - y[origins] for h in range(1, 6)], axis=1)
    np.testing.assert_allclose(back, expected, rtol=1e-12, atol=1e-15)
    assert np.isnan(z[-1]).all() and np.isfinite(z[-6]).all()


@pytest.mark.parametrize("kind", list(KINDS.values()), ids=list(KINDS))
def test_a_kind_goes_there_and_back(kind):
    values = np.array([0.5, 1.0, 2.5, 100.0])
    anchor = 2.0
    changes = kind.coordinates(values) - kind.coordinates(np.array([anchor]))
    np.testing.assert_allclose(kind.values(anchor, changes), values, rtol=1e-12)


def test_a_price_refuses_zero_and_names_where():
    assert PRICE.invalid(np.array([1.0, 0.0, -1.0])).tolist() == [False, True, True]
    with pytest.raises(ValueError, match=r"^row 2: price must be positive, got 0\.$") as caught:
        PRICE.check(np.array([1.0, 0.0]), lambda i: f"row {i + 1}")
    assert caught.value.reason == "non_positive_price"
