"""GPU workers: forecasts on CUDA equal the CPU ones, and TorchServe gives its workers GPUs.

Marked ``gpu``; they need CUDA and skip without it (the CPU-only CI machine runs the GPU path's
device choice in tests/test_handler.py instead). `scripts/gpu_check.sh` runs them with the GPU
benchmark on a machine that has one.
"""

from __future__ import annotations

import pytest
import torch

from alm_forecaster.config import ModelConfig
from alm_forecaster.forecaster import Forecaster, Request
from alm_forecaster.model import XLSTMForecaster
from alm_forecaster.testing.synthetic import embeddings_csv, price_csv
from alm_ops.api import custom_metadata
from alm_ops.launcher import TorchServe
from tests.helpers import ROOT

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (scripts/gpu_check.sh on a GPU machine)"),
]

#: CUDA's float32 GEMMs and transcendental functions round differently from the CPU's.
TOLERANCE = 1e-4
QUANTILES = ROOT / "models" / "alm_quantiles.pt"
SP500 = ROOT / "models" / "sp500_xlstm.pt"


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 would round GEMM inputs to 10 bits; the service computes in float32."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_full_size_forward_on_cuda_equals_cpu():
    torch.manual_seed(0)
    model = XLSTMForecaster(ModelConfig()).eval()
    x = torch.randn(64, 20, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        cpu = model(x)
        gpu = model.to("cuda")(x.to("cuda")).cpu()
        alone = model(x[7:8].to("cuda")).cpu()
    assert rel(gpu, cpu) <= TOLERANCE
    assert rel(alone[0], gpu[7]) <= TOLERANCE  # a window alone and in a batch of 64


@pytest.mark.parametrize(
    "checkpoint,body",
    [(QUANTILES, price_csv(300, seed=3)), (SP500, embeddings_csv(rows=20, input_size=32, seed=4))],
    ids=["alm_quantiles", "sp500_xlstm"],
)
def test_shipped_models_on_cuda_equal_cpu(checkpoint, body):
    cpu = Forecaster.from_checkpoint(checkpoint, checkpoint.stem, device="cpu").predict([Request(body)])[0]
    gpu = Forecaster.from_checkpoint(checkpoint, checkpoint.stem, device="cuda").predict([Request(body)])[0]
    assert cpu.status == gpu.status == 200, (cpu.body, gpu.body)
    want, got = cpu.body, gpu.body
    assert got["current_price"] == want["current_price"]
    assert got["predicted_prices"] == pytest.approx(want["predicted_prices"], rel=TOLERANCE)
    for level, values in want.get("quantiles", {}).items():
        assert got["quantiles"][level] == pytest.approx(values, rel=TOLERANCE)


def test_torchserve_gives_each_worker_a_gpu(torchserve: TorchServe):
    """deviceType: gpu (archive_configs/default.yaml): TorchServe hands each worker a gpu_id and
    the handler runs the model there; the served forecast equals the CPU one."""
    torchserve.checkpoints["alm_quantiles"] = QUANTILES
    workers = torchserve.ensure_model("alm_quantiles")
    assert workers and all(worker.get("gpu") for worker in workers), workers
    described = custom_metadata(torchserve.describe("alm_quantiles", customized=True))
    assert described["device"].startswith("cuda"), described
    body = price_csv(300, seed=5)
    answer = torchserve.predict("alm_quantiles", files={"data": ("prices.csv", body)})
    assert answer.status_code == 200, answer.text
    want = Forecaster.from_checkpoint(QUANTILES, "alm_quantiles", device="cpu").predict([Request(body)])[0].body
    assert answer.json()["predicted_prices"] == pytest.approx(want["predicted_prices"], rel=TOLERANCE)


def test_gpu_benchmark_checks_its_own_numbers():
    """bench/gpu.py (scripts/bench_gpu.py): the eager forward agrees with the CPU and the CUDA
    graph replays the same forward."""
    from bench.gpu import measure_gpu

    result = measure_gpu(ModelConfig(), [1, 8], runs=3)
    for row in result["rows"]:
        assert row["rel_vs_cpu"] <= TOLERANCE, row
        assert row["graph_rel_vs_eager"] <= 1e-6, row
        assert row["eager_ms"] > 0 and row["graph_ms"] > 0
