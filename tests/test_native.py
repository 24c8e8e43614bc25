"""The compiled recurrence kernel (alm_forecaster/native) against the PyTorch recurrences, the
plain oracle and itself (batch and thread invariance), plus its error messages and switch.

The library is built here when it is missing (CI runs scripts/build_native.py first anyway),
so these tests never silently skip the kernel.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alm_forecaster import cells, native
from alm_forecaster.config import ModelConfig
from alm_forecaster.model import XLSTMForecaster
from alm_forecaster.testing.oracle import oracle_forward
from tests.helpers import ROOT

CHECKPOINTS = ROOT / "models"


@pytest.fixture(scope="module", autouse=True)
def built(request):
    """Build (and load) the library when this process has not loaded one; run with it on."""
    if not native.is_loaded():
        try:
            native.build()
        except RuntimeError as exc:
            pytest.fail(f"the native kernel does not build: {exc}")
    assert native.is_loaded()
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def native_on(monkeypatch):
    monkeypatch.delenv("ALM_FORECASTER_NATIVE", raising=False)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm-relative difference over the whole output."""
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def uniform(rows: int, cols: int, gen: torch.Generator) -> torch.Tensor:
    """The model's initialisation of recurrent weights: U(-1/sqrt(H), 1/sqrt(H))."""
    return (torch.rand(rows, cols, generator=gen) * 2 - 1) / math.sqrt(cols)


def slstm_inputs(batch: int, steps: int, hidden: int, seed: int, forget_shift: float = -1.0):
    """Gate inputs of the model's scale. forget_shift < 0 keeps the forget gates below 1, as in a
    trained cell; with f > 1 the sLSTM cell state grows like prod(f) (1e5 after 20 steps) and
    h = tanh(c) cancels catastrophically near c = 0, so no float32 implementation (PyTorch's
    included) is elementwise reproducible there; that case is tested against float64 below."""
    gen = torch.Generator().manual_seed(seed)
    x_gates = torch.randn(batch, steps, 4 * hidden, generator=gen) * 0.5
    x_gates[..., hidden : 2 * hidden] += forget_shift
    return x_gates, uniform(4 * hidden, hidden, gen)


def mlstm_inputs(batch: int, steps: int, hidden: int, seed: int):
    """x_gates (B, T, 3H) and q, k, v as the model makes them: slices of one (B, T, 6H)
    projection (non-contiguous), q and k divided by sqrt(H)."""
    gen = torch.Generator().manual_seed(seed)
    projected = torch.randn(batch, steps, 6 * hidden, generator=gen) * 0.7
    projected[..., 3 * hidden : 5 * hidden] /= math.sqrt(hidden)
    x_gates, q, k, v = projected.split([3 * hidden, hidden, hidden, hidden], dim=-1)
    return x_gates, q, k, v, uniform(3 * hidden, hidden, gen)


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    assert rel(got, want) <= 1e-5
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


SHAPES = [(b, h, t) for b in (1, 3, 64) for h in (8, 32, 256) for t in (1, 20)]
SHAPE_IDS = [f"B{b}-H{h}-T{t}" for b, h, t in SHAPES]


@pytest.mark.parametrize(("batch", "hidden", "steps"), SHAPES, ids=SHAPE_IDS)
def test_slstm_matches_pytorch(batch, hidden, steps):
    x_gates, weight = slstm_inputs(batch, steps, hidden, seed=batch * 1000 + hidden + steps)
    with torch.inference_mode():
        assert_close(native.slstm_sequence(x_gates, weight), cells._slstm_sequence_torch(x_gates, weight))


@pytest.mark.parametrize(("batch", "hidden", "steps"), SHAPES, ids=SHAPE_IDS)
def test_mlstm_matches_pytorch(batch, hidden, steps):
    x_gates, q, k, v, weight = mlstm_inputs(batch, steps, hidden, seed=batch * 1000 + hidden + steps)
    assert q.stride(0) == steps * 6 * hidden  # slices of one projection, as in the model
    with torch.inference_mode():
        got = native.mlstm_sequence(x_gates, q, k, v, weight)
        assert_close(got, cells._mlstm_sequence_torch(x_gates, q, k, v, weight))


@pytest.mark.parametrize("threads", [1, 2])
def test_growing_slstm_state_at_least_as_accurate_as_pytorch(threads):
    """Forget gates above 1 (unshifted inputs): compare both float32 versions with float64."""
    torch.set_num_threads(threads)
    x_gates, weight = slstm_inputs(64, 20, 256, seed=7, forget_shift=0.0)
    with torch.inference_mode():
        truth = cells._slstm_sequence_torch(x_gates.double(), weight.double())
        ours = rel(native.slstm_sequence(x_gates, weight), truth)
        theirs = rel(cells._slstm_sequence_torch(x_gates, weight), truth)
    assert ours <= 1e-5
    assert ours <= 2 * theirs + 1e-7, (ours, theirs)


def test_mlstm_accuracy_against_float64():
    x_gates, q, k, v, weight = mlstm_inputs(16, 20, 256, seed=8)
    with torch.inference_mode():
        truth = cells._mlstm_sequence_torch(*(t.double() for t in (x_gates, q, k, v, weight)))
        ours = rel(native.mlstm_sequence(x_gates, q, k, v, weight), truth)
        theirs = rel(cells._mlstm_sequence_torch(x_gates, q, k, v, weight), truth)
    assert ours <= 2 * theirs + 1e-7, (ours, theirs)


def test_any_strides():
    """Strided batch/time dimensions are read in place; a non-unit last stride is copied."""
    hidden = 32
    x_gates, q, k, v, weight = mlstm_inputs(5, 7, hidden, seed=9)
    time_major = x_gates.transpose(0, 1).contiguous().transpose(0, 1)  # (B, T, 3H), batch stride 3H
    spaced = torch.randn(5, 7, 2 * hidden, generator=torch.Generator().manual_seed(10))[..., ::2] / 6  # stride 2
    with torch.inference_mode():
        assert_close(
            native.mlstm_sequence(time_major, q, k, spaced, weight),
            cells._mlstm_sequence_torch(x_gates, q, k, spaced, weight),
        )
        s_gates, s_weight = slstm_inputs(5, 7, hidden, seed=11)
        sliced = torch.cat([s_gates, s_gates], dim=-1)[..., : 4 * hidden]
        assert not sliced.is_contiguous()
        assert_close(
            native.slstm_sequence(sliced, s_weight.t().contiguous().t()), cells._slstm_sequence_torch(s_gates, s_weight)
        )


def test_empty_batch_and_sequence():
    with torch.inference_mode():
        assert native.slstm_sequence(torch.zeros(0, 20, 32), torch.zeros(32, 8)).shape == (0, 20, 8)
        assert native.slstm_sequence(torch.zeros(2, 0, 32), torch.zeros(32, 8)).shape == (2, 0, 8)
        empty = torch.zeros(2, 0, 8)
        assert native.mlstm_sequence(torch.zeros(2, 0, 24), empty, empty, empty, torch.zeros(24, 8)).shape == (2, 0, 8)


@pytest.mark.parametrize("hidden", [256, 136, 32])
def test_bitwise_batch_and_thread_invariance(hidden):
    """A sample's numbers are the same bits alone, in any sub-batch and with 1 or 2 threads
    (sLSTM batch 1 and 3 on 2 threads split the hidden units across the threads; batch 37 the samples)."""
    x_gates, s_weight = slstm_inputs(37, 20, hidden, seed=12)
    m_gates, q, k, v, m_weight = mlstm_inputs(37, 20, hidden, seed=13)
    with torch.inference_mode():
        torch.set_num_threads(2)
        s_full = native.slstm_sequence(x_gates, s_weight)
        m_full = native.mlstm_sequence(m_gates, q, k, v, m_weight)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for lo, hi in ((0, 1), (17, 18), (36, 37), (3, 5), (30, 33)):
                part = slice(lo, hi)
                assert torch.equal(native.slstm_sequence(x_gates[part], s_weight), s_full[part]), (threads, lo, hi)
                got = native.mlstm_sequence(m_gates[part], q[part], k[part], v[part], m_weight)
                assert torch.equal(got, m_full[part]), (threads, lo, hi)


def model_for(seed: int = 0) -> XLSTMForecaster:
    torch.manual_seed(seed)
    return XLSTMForecaster(ModelConfig()).eval()


def test_full_model_with_native_matches_oracle(monkeypatch):
    """The standard parity case of tests/test_model.py, with every recurrence on the kernel."""
    calls = {"s": 0, "m": 0}
    slstm, mlstm = native.slstm_sequence, native.mlstm_sequence

    def counting_slstm(*args):
        calls["s"] += 1
        return slstm(*args)

    def counting_mlstm(*args):
        calls["m"] += 1
        return mlstm(*args)

    monkeypatch.setattr(native, "slstm_sequence", counting_slstm)
    monkeypatch.setattr(native, "mlstm_sequence", counting_mlstm)
    config = ModelConfig()
    model = model_for()
    x = torch.randn(3, config.seq_len, config.input_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fast = model(x)
        plain = oracle_forward(model.state_dict(), config.num_blocks, config.num_layers, x)
    assert calls == {"s": 12, "m": 9}  # 4 sLSTM and 3 mLSTM blocks of 3 layers: all on the kernel
    assert fast.shape == (3, config.output_size)
    assert rel(fast, plain) <= 1e-5


def test_full_model_as_accurate_as_pytorch_path(monkeypatch):
    """The untrained full-size model amplifies float32 rounding ~100-1000x (its sLSTM states
    grow), so any two float32 implementations differ by 3e-6..4e-5 depending on the input (the
    PyTorch path and the oracle included). What must hold is accuracy: against a float64 run of
    the oracle the kernel's error is of the same size as the PyTorch path's."""
    config = ModelConfig()
    model = model_for()
    state64 = {name: value.double() for name, value in model.state_dict().items()}
    ours = theirs = 0.0
    for seed in (2, 3, 4):
        x = torch.randn(3, config.seq_len, config.input_size, generator=torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            truth = oracle_forward(state64, config.num_blocks, config.num_layers, x.double())
            ours += rel(model(x), truth)
            monkeypatch.setenv("ALM_FORECASTER_NATIVE", "0")
            theirs += rel(model(x), truth)
            monkeypatch.delenv("ALM_FORECASTER_NATIVE")
    assert ours <= 2 * theirs, (ours, theirs)


def test_full_model_batch_invariance():
    """The kernel is bitwise batch-invariant (see above); what is left at model level is the
    BLAS's input projections (other kernels for other batch sizes), well under 1e-6 here."""
    model = model_for()
    x = torch.randn(64, 20, 128, generator=torch.Generator().manual_seed(3))
    x[5] *= 40.0  # an extreme window must not move anybody else's forecast
    with torch.inference_mode():
        batch = model(x)
        for i in (0, 6, 63):
            assert rel(model(x[i : i + 1])[0], batch[i]) <= 1e-6, i


def test_supports():
    x = torch.zeros(2, 3, 8)
    assert native.supports(x)
    assert not native.supports(x.double())
    assert not native.supports(x.to(torch.bfloat16))
    assert not native.supports(torch.zeros(2, 3, 8, device="meta"))
    grad = torch.zeros(2, 3, 8, requires_grad=True)
    assert not native.supports(grad)  # no backward in the kernel: training takes the PyTorch path
    with torch.no_grad():
        assert native.supports(grad)
    weight = torch.zeros(4, 8, requires_grad=True)
    assert not native.supports(x, weight)  # an input without gradient, a weight with one: PyTorch


def test_training_reaches_every_parameter():
    """A training step on CPU float32 (the kernel loaded, inputs that need no gradient) gives
    every parameter a gradient: no layer may take the kernel, which has no backward."""
    model = model_for().train()
    x = torch.randn(2, 20, 128)
    model(x).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_switch_off_by_environment(monkeypatch):
    x = torch.zeros(2, 3, 8)
    monkeypatch.setenv("ALM_FORECASTER_NATIVE", "0")
    assert not native.supports(x)
    monkeypatch.setenv("ALM_FORECASTER_NATIVE", "1")
    assert native.supports(x)


def test_library_state():
    assert native.is_loaded() and native.variant() == "native"
    assert native.library_path().is_file() and native.library_path("portable").is_file()
    assert native.library_path().parent.name == "_build"


def test_build_while_loaded_compiles_in_a_child_process():
    """A loaded library cannot be registered again in its process: `build` runs
    ``python -m alm_forecaster.native`` instead, and this process keeps the version it has."""
    assert native.build() == native.library_path()
    assert native.library_path().is_file()
    assert native.is_loaded() and native.load_error() is None


def test_wrong_dtype_is_a_clear_error():
    x_gates, weight = slstm_inputs(2, 3, 8, seed=16)
    with pytest.raises(RuntimeError, match="x_gates must be float32, got Double"):
        native.slstm_sequence(x_gates.double(), weight)
    with pytest.raises(RuntimeError, match="weight must be float32, got Half"):
        native.slstm_sequence(x_gates, weight.half())
    m_gates, q, k, v, m_weight = mlstm_inputs(2, 3, 8, seed=17)
    with pytest.raises(RuntimeError, match="k must be float32"):
        native.mlstm_sequence(m_gates, q, k.double(), v, m_weight)


def test_wrong_shapes_are_clear_errors():
    x_gates, weight = slstm_inputs(2, 3, 8, seed=18)
    with pytest.raises(RuntimeError, match=r"x_gates must have shape \(B, T, 4H\) with 4H = 32"):
        native.slstm_sequence(x_gates[..., :24], weight)
    with pytest.raises(RuntimeError, match=r"weight_hh must have shape \(4H, H\)"):
        native.slstm_sequence(x_gates, weight[:24])
    with pytest.raises(RuntimeError, match=r"x_gates must have shape \(B, T, 4H\)"):
        native.slstm_sequence(x_gates[0], weight)
    m_gates, q, k, v, m_weight = mlstm_inputs(2, 3, 8, seed=19)
    with pytest.raises(RuntimeError, match=r"q must have shape \(B, T, H\) = \(2, 3, 8\)"):
        native.mlstm_sequence(m_gates, q[:1], k, v, m_weight)
    with pytest.raises(RuntimeError, match=r"v must have shape"):
        native.mlstm_sequence(m_gates, q, k, v[..., :4], m_weight)
    with pytest.raises(RuntimeError, match=r"weight_hh must have shape \(3H, H\)"):
        native.mlstm_sequence(m_gates, q, k, v, torch.zeros(32, 8))
    other = native.packed_weight(torch.zeros(4 * 16, 16))
    with pytest.raises(RuntimeError, match=r"weight_packed must be alm_forecaster::pack_weight\(weight_hh\)"):
        torch.ops.alm_forecaster.slstm_sequence(x_gates, weight, other)


@pytest.mark.parametrize("rows,n,k", [(1, 1024, 256), (20, 1536, 256), (37, 5, 256), (7, 100, 13), (640, 256, 128)])
def test_linear_matches_pytorch_and_is_row_invariant(rows, n, k):
    """The input projections: F.linear within float32 rounding, any N (partial last panel) and
    K, and each row's bits independent of its neighbours and of the thread count."""
    gen = torch.Generator().manual_seed(rows + n + k)
    x = torch.randn(rows, k, generator=gen)
    weight, bias = uniform(n, k, gen), torch.randn(n, generator=gen)
    with torch.inference_mode():
        torch.set_num_threads(2)
        got = native.linear(x, weight, bias)
        assert_close(got, torch.nn.functional.linear(x, weight, bias))
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for lo, hi in ((0, 1), (rows - 1, rows), (rows // 3, rows // 3 + 4)):
                assert torch.equal(native.linear(x[lo:hi], weight, bias), got[lo:hi]), (threads, lo, hi)
        as_sequence = native.linear(x.reshape(1, rows, k), weight, bias)
    assert as_sequence.shape == (1, rows, n) and torch.equal(as_sequence[0], got)


def test_linear_shapes_are_clear_errors():
    x, weight, bias = torch.zeros(3, 8), torch.zeros(16, 8), torch.zeros(16)
    with pytest.raises(RuntimeError, match=r"x must have shape \(\.\.\., K\) with K = 8, got \[3, 7\]"):
        native.linear(x[:, :7], weight, bias)
    with pytest.raises(RuntimeError, match=r"bias must have shape \(N,\) = \(16,\), got \[15\]"):
        native.linear(x, weight, bias[:15])
    with pytest.raises(RuntimeError, match=r"weight_packed must be alm_forecaster::pack_weight\(weight\)"):
        torch.ops.alm_forecaster.linear(x, weight, native.packed_weight(torch.zeros(16, 9)), bias)


def test_packed_weight_is_kept_until_the_weight_changes():
    """The packed copy is made once per weight, and again after an in-place update
    (load_state_dict, an optimiser step): a stale copy would give another model's forecasts."""
    x_gates, weight = slstm_inputs(2, 5, 16, seed=20)
    param = torch.nn.Parameter(weight.clone())
    with torch.inference_mode():
        first = native.packed_weight(param)
        assert native.packed_weight(param) is first
        before = native.slstm_sequence(x_gates, param)
        param.mul_(0.5)
        assert native.packed_weight(param) is not first
        after = native.slstm_sequence(x_gates, param)
    assert not torch.equal(after, before)
    assert_close(after, cells._slstm_sequence_torch(x_gates, param.detach()))


def test_a_build_is_not_loaded_on_a_cpu_without_its_extensions(tmp_path, monkeypatch):
    """-march=native code taken to an older CPU would die of SIGILL: it is refused instead, with
    a warning naming what is missing, and the portable build serves (PyTorch when there is none)."""
    record = tmp_path / native.CPU_FEATURES_FILE
    record.write_text("sse4_2 avx2 avx512f\n")
    assert native.missing_cpu_features(record, {"sse4_2", "avx2"}) == ["avx512f"]
    assert native.missing_cpu_features(record, None) == []
    assert native.missing_cpu_features(tmp_path / "absent.txt", {"avx2"}) == []
    # The native build records this machine's extensions, all present here; the portable one none.
    built = native.library_path("native").with_name(native.CPU_FEATURES_FILE)
    assert built.is_file() and native.missing_cpu_features(built, native.cpu_features()) == []
    assert not native.library_path("portable").with_name(native.CPU_FEATURES_FILE).exists()
    # What the import does on a CPU that lacks one of them: refuse before loading, take the portable build.
    monkeypatch.setattr(native, "_load_error", native._load_error)
    monkeypatch.setattr(native, "cpu_features", lambda: {"sse4_2"})
    loads = []
    monkeypatch.setattr(native, "_load", lambda path, name: loads.append(name) or True)
    native._load_at_import()
    assert loads == ["portable"]
    # Without a portable build: refused with the reason, and the PyTorch path serves.
    monkeypatch.setattr(native, "VARIANTS", native.VARIANTS[:1])
    loads.clear()
    native._load_at_import()
    assert loads == [] and "which this one lacks" in native.load_error()


PORTABLE_PROBE = """
import json, sys, torch
from alm_forecaster import native
from alm_forecaster.config import ModelConfig
from alm_forecaster.model import XLSTMForecaster
torch.manual_seed(0)
model = XLSTMForecaster(ModelConfig()).eval()
x = torch.randn(4, 20, 128, generator=torch.Generator().manual_seed(1))
with torch.inference_mode():
    out = torch.cat([model(x), model(x[2:3])])
print(json.dumps({"variant": native.variant(), "out": out.tolist()}))
"""


def test_portable_build_runs_and_agrees(tmp_path):
    """The portable build (no -march: x86-64 baseline, no FMA), loaded as on an older CPU:
    the same forecasts as the PyTorch path within float32 rounding, and batch-invariant."""
    probe = tmp_path / "probe.py"
    probe.write_text(PORTABLE_PROBE)
    assert native.library_path("portable").is_file()
    results = {}
    for setting in ("portable", "0"):
        env = dict(os.environ, **{native.ENV_SWITCH: setting})
        proc = subprocess.run([sys.executable, str(probe)], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results[setting] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["portable"]["variant"] == "portable" and results["0"]["variant"] is None
    portable, pytorch = torch.tensor(results["portable"]["out"]), torch.tensor(results["0"]["out"])
    assert rel(portable[:4], pytorch[:4]) <= 1e-5
    assert torch.equal(portable[4], portable[2])  # batch-invariant bitwise, like the native build


def cpu_has_bf16() -> bool:
    """Whether this CPU has AVX512-BF16 (Linux's /proc/cpuinfo flags), whatever build is loaded."""
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


@pytest.fixture
def bf16_build():
    """On a CPU with AVX512-BF16 the loaded build must have the bf16 products: a build that lost
    them (the portable one loaded, or a compile without them) fails here instead of skipping."""
    assert native.has_bf16(), f"this CPU has AVX512-BF16, but the loaded build ({native.variant()}) has no bf16"


def bf16_only(test):
    """A bf16 test: skipped only on a CPU without AVX512-BF16 (hardware, like the GPU tests; it
    was decided at collection by the loaded build, so a build not yet loaded skipped silently)."""
    skip = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no AVX512-BF16 (hardware)")
    return skip(pytest.mark.usefixtures("bf16_build")(test))


def test_precision_setting_is_checked():
    with pytest.raises(ValueError, match="precision must be one of"):
        with native.precision("fp16"):
            pass


@bf16_only
@pytest.mark.parametrize("hidden", [256, 136])
def test_bf16_is_close_to_float32_and_still_batch_invariant(hidden):
    """The opt-in bf16 products: close to float32 on one cell (bfloat16 keeps 8 bits of the
    mantissa: ~0.4% per rounded factor, summed in float32), bitwise the same for a sample alone
    and in a batch, and float32 again outside the block."""
    x_gates, s_weight = slstm_inputs(9, 20, hidden, seed=21)
    x = torch.randn(9, 20, hidden, generator=torch.Generator().manual_seed(22))
    weight, bias = uniform(3 * hidden, hidden, torch.Generator().manual_seed(23)), torch.zeros(3 * hidden)
    with torch.inference_mode():
        exact = native.slstm_sequence(x_gates, s_weight)
        exact_linear = native.linear(x, weight, bias)
        with native.precision("bf16"):
            low = native.slstm_sequence(x_gates, s_weight)
            low_linear = native.linear(x, weight, bias)
            alone = native.slstm_sequence(x_gates[4:5], s_weight)
        again = native.slstm_sequence(x_gates, s_weight)
    assert 0 < rel(low, exact) <= 2e-2 and 0 < rel(low_linear, exact_linear) <= 1e-2
    assert torch.equal(alone[0], low[4])
    assert torch.equal(again, exact)


def test_bf16_forecaster_falls_back_to_float32_where_it_cannot_run(monkeypatch, caplog):
    """A bf16 setting on a machine without it serves exact float32 forecasts, with a warning."""
    from alm_forecaster.forecaster import Forecaster

    monkeypatch.setattr(native, "has_bf16", lambda: False)
    forecaster = Forecaster.from_checkpoint(CHECKPOINTS / "sp500_xlstm.pt", device="cpu", precision="bf16")
    assert forecaster.precision == "fp32" and forecaster.describe()["precision"] == "fp32"
    assert "serving float32" in caplog.text
    with pytest.raises(ValueError, match="precision must be one of"):
        Forecaster.from_checkpoint(CHECKPOINTS / "sp500_xlstm.pt", device="cpu", precision="int8")


@bf16_only
@pytest.mark.parametrize("name", ["sp500_xlstm", "alm_quantiles"])
def test_bf16_shipped_models_forecast_within_stated_error(name):
    """The shipped (trained) models under bf16: every predicted price within 10 bp of float32
    (measured: BENCHMARKS.md), quantiles still ordered."""
    from alm_forecaster.forecaster import Forecaster
    from alm_forecaster.testing.synthetic import embeddings_csv, price_csv

    bodies = (
        [price_csv(300, seed=s) for s in range(6)]
        if name == "alm_quantiles"
        else [embeddings_csv(rows=20, input_size=32, seed=s) for s in range(6)]
    )
    exact = Forecaster.from_checkpoint(CHECKPOINTS / f"{name}.pt", device="cpu").predict(bodies)
    low = Forecaster.from_checkpoint(CHECKPOINTS / f"{name}.pt", device="cpu", precision="bf16").predict(bodies)
    for want, got in zip(exact, low, strict=True):
        assert want.status == got.status == 200, (want.body, got.body)
        assert got.body["predicted_prices"] != want.body["predicted_prices"]  # bf16 really ran
        assert got.body["predicted_prices"] == pytest.approx(want.body["predicted_prices"], rel=1e-3)
        for values in zip(*got.body.get("quantiles", {}).values(), strict=True):
            assert list(values) == sorted(values)


def test_fake_pack_weight_has_the_real_shape():
    """The shape function registered for tracing (torch.compile / export) agrees with the op."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    weight = torch.randn(100, 13)
    for bf16 in (False, True) if native.has_bf16() else (False,):
        real = torch.ops.alm_forecaster.pack_weight(weight, bf16)
        with FakeTensorMode() as mode:
            fake = torch.ops.alm_forecaster.pack_weight(mode.from_tensor(weight), bf16)
        assert (fake.shape, fake.dtype) == (real.shape, real.dtype), bf16
