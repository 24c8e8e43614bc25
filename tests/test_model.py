"""The fast forward against the plain step-by-step oracle; batch invariance; served horizon."""

from __future__ import annotations

import pytest
import torch

from alm_forecaster import native
from alm_forecaster.config import ModelConfig
from alm_forecaster.model import XLSTMForecaster
from alm_forecaster.testing.oracle import oracle_forward

SHAPES = [
    ModelConfig(input_size=8, hidden_size=16, num_layers=1, num_blocks=1, output_size=1),
    ModelConfig(input_size=8, hidden_size=16, num_layers=2, num_blocks=3, output_size=5),
    ModelConfig(input_size=32, hidden_size=64, num_layers=3, num_blocks=4, output_size=3),
    ModelConfig(),  # the platform's full seed size: 128 -> 256, 3 layers, 7 blocks, 5 steps
]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm-relative difference, per the whole output."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(params=["native", "pytorch"])
def kernel(request, monkeypatch):
    """Run each test with the compiled kernel (when built) and with the pure-PyTorch path."""
    if request.param == "pytorch":
        monkeypatch.setenv("ALM_FORECASTER_NATIVE", "0")
    return request.param


def model_for(config: ModelConfig, seed: int = 0) -> XLSTMForecaster:
    torch.manual_seed(seed)
    return XLSTMForecaster(config).eval()


@pytest.mark.parametrize("config", SHAPES, ids=lambda c: f"H{c.hidden_size}-L{c.num_layers}-N{c.num_blocks}")
def test_fast_forward_matches_oracle_float32(config, kernel):
    model = model_for(config)
    x = torch.randn(3, 20, config.input_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fast = model(x)
        plain = oracle_forward(model.state_dict(), config.num_blocks, config.num_layers, x)
    assert fast.shape == (3, config.output_size)
    assert rel(fast, plain) <= 1e-5


def test_fast_forward_matches_oracle_float64(kernel):
    """In float64 the two orders of summation agree to ~1e-14: the same algorithm, not a lookalike."""
    config = SHAPES[2]
    model = model_for(config).double()
    x = torch.randn(4, 20, config.input_size, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert rel(model(x), oracle_forward(model.state_dict(), config.num_blocks, config.num_layers, x)) <= 1e-10


def test_batch_invariance_at_full_size(kernel):
    """A window's forecast alone and among 63 other windows agrees to 1e-6 with the compiled
    kernel, which computes every sample with the same code whatever the batch size. The
    PyTorch fallback lets the BLAS pick other kernels for other batch sizes (GEMV at batch 1,
    GEMM above), whose float32 rounding, amplified through 21 recurrent layers, reaches ~4e-6.
    """
    tolerance = 1e-6 if kernel == "native" and native.is_loaded() else 1e-5
    model = model_for(ModelConfig())
    x = torch.randn(64, 20, 128, generator=torch.Generator().manual_seed(3))
    x[5] *= 40.0  # one extreme window: under a batch-wide max it would rescale everybody's memory
    with torch.inference_mode():
        batch = model(x)
        for i in (0, 6, 63):
            assert rel(model(x[i : i + 1])[0], batch[i]) <= tolerance, i


def test_batch_wide_normalisation_would_be_detected():
    """Guard for the test above: the original batch-wide max moves a forecast far more than 1e-5."""
    config = SHAPES[1]
    model = model_for(config)
    x = torch.randn(8, 20, config.input_size, generator=torch.Generator().manual_seed(4))
    x[5] *= 40.0
    state = model.state_dict()
    with torch.inference_mode():
        alone = oracle_forward(state, config.num_blocks, config.num_layers, x[:1], batch_wide=True)[0]
        together = oracle_forward(state, config.num_blocks, config.num_layers, x, batch_wide=True)[0]
    assert rel(together, alone) > 1e-3


def test_parameters_named_as_in_the_platform_checkpoints():
    names = set(XLSTMForecaster(SHAPES[1]).state_dict())
    assert {
        "input_projection.0.weight",
        "input_projection.1.bias",
        "blocks.0.lstm.layers.1.weight_ih",
        "blocks.0.lstm.layers.1.weight_hh",
        "blocks.0.lstm.layers.1.bias",
        "blocks.1.lstm.layers.0.W_q.weight",
        "blocks.1.lstm.layers.0.W_k.weight",
        "blocks.1.lstm.layers.0.W_v.weight",
        "blocks.2.norm.weight",
        "blocks.2.proj.bias",
        "output_head.0.weight",
        "output_head.3.weight",
    } <= names
    assert not any("W_q.bias" in n or "output_head.2" in n for n in names)


def test_weights_changed_after_first_forward_are_used():
    """The fused mLSTM input weights are cached; a later load_state_dict must invalidate them."""
    config = SHAPES[1]
    a, b = model_for(config, seed=0), model_for(config, seed=1)
    x = torch.randn(1, 20, config.input_size)
    with torch.inference_mode():
        a(x)
    a.load_state_dict(b.state_dict())
    with torch.inference_mode():
        assert torch.equal(a(x), b(x))
