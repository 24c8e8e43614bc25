"""What is timed in this process, without a server: one request's parse + validate (the project's
path against pandas and numpy), the forward (fast, pure PyTorch, and the plain step-by-step
oracle), ``Forecaster.predict``, and the `Probe` forward timed next to each server measurement."""

from __future__ import annotations

import io
import os
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alm_forecaster import native
from alm_forecaster.checkpoint import build_checkpoint, load_checkpoint
from alm_forecaster.config import ModelConfig
from alm_forecaster.contract import PRICE_COLUMN, Window, embedding_columns
from alm_forecaster.errors import InputError
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.model import XLSTMForecaster
from alm_forecaster.table import decode
from alm_forecaster.testing.oracle import oracle_forward
from alm_forecaster.testing.synthetic import embeddings_csv, seed_checkpoint

from .machine import CpuMeter

ROOT = Path(__file__).resolve().parent.parent

#: The contract limit for one request's parse + validate.
PARSE_LIMIT_MS = 1.0


# --------------------------------------------------------------------------- parse + validate


def measure_parse(rows: int = 20, input_size: int = 128, runs: int = 2000) -> dict:
    """p50 and p99 of the project's parse, pandas and numpy on the same embeddings CSV, after
    checking that all three give the same window."""
    payload = embeddings_csv(rows=rows, input_size=input_size, seed=0)
    seq_len = rows
    fc = parse_forecaster(input_size)
    paths = {
        "project (csv/str, Forecaster.parse)": lambda: fc.parse(payload),
        "pandas.read_csv + same checks": lambda: pandas_window(payload, input_size, seq_len),
        "numpy.loadtxt + same checks": lambda: numpy_window(payload, input_size, seq_len),
    }
    reference = fc.parse(payload)
    for name, fn in paths.items():
        window = fn()
        if not (
            np.array_equal(window.embeddings, reference.embeddings) and window.current_price == reference.current_price
        ):
            raise AssertionError(f"{name}: a different window than the project's path")
    results = {name: time_ms(fn, runs) for name, fn in paths.items()}
    return {
        "rows": rows,
        "columns": input_size + 1,
        "bytes": len(payload),
        "runs": runs,
        "paths": results,
        "limit_ms": PARSE_LIMIT_MS,
    }


#: The README's OHLCV example and the model that reads it (its feature pipeline in the checkpoint).
OHLCV_EXAMPLE = ROOT / "examples" / "sp500_tail.csv"
OHLCV_MODEL = ROOT / "models" / "sp500_xlstm.pt"


def measure_ohlcv_parse(runs: int = 300) -> dict:
    """p50 and p99 of ``Forecaster.parse`` on the README's raw OHLCV example for sp500_xlstm:
    the CSV read, the 71 causal features over each window day's 60-day look-back, standardised
    and reduced by PCA (alm_forecaster/features.py). Was asserted (< 20 ms) in tests/test_features.py."""
    forecaster = Forecaster.from_checkpoint(OHLCV_MODEL, device="cpu")
    payload = OHLCV_EXAMPLE.read_bytes()
    window = forecaster.parse(payload)
    return {
        "file": str(OHLCV_EXAMPLE.relative_to(ROOT)),
        "rows": payload.count(b"\n") - 1,
        "window": list(window.embeddings.shape),
        "runs": runs,
        **time_ms(lambda: forecaster.parse(payload), runs),
    }


def parse_forecaster(input_size: int) -> Forecaster:
    """A Forecaster with the given input size (a small random network: only parsing is timed)."""
    config = ModelConfig(input_size=input_size, hidden_size=16, num_layers=1, num_blocks=1)
    loaded = build_checkpoint(seed_checkpoint(config, seed=0), Path("bench_parse"))
    return Forecaster(loaded, "bench_parse")


def pandas_window(payload: bytes, input_size: int, seq_len: int) -> Window:
    """``pandas.read_csv`` then the contract's checks (pandas is never imported by the served code)."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(payload))
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"Malformed CSV: {exc}", status=400, reason="malformed_csv") from None
    columns = embedding_columns(input_size) + [PRICE_COLUMN]
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise InputError(f"Missing required columns: {', '.join(missing)}.", reason="missing_columns")
    if len(frame) < seq_len:
        raise InputError(f"Not enough data points. Need at least {seq_len}, got {len(frame)}", reason="too_few_rows")
    try:
        values = frame[columns].iloc[-seq_len:].to_numpy(dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError("A value is not a number.", reason="bad_value") from None
    return _finish(values, columns, seq_len)


def numpy_window(payload: bytes, input_size: int, seq_len: int) -> Window:
    """``numpy.loadtxt`` of the numeric block, then the contract's checks."""
    text = decode(payload)
    header_end = text.index("\n")
    header = [name.strip() for name in text[:header_end].split(",")]
    columns = embedding_columns(input_size) + [PRICE_COLUMN]
    index = {name: i for i, name in enumerate(header)}
    missing = [name for name in columns if name not in index]
    if missing:
        raise InputError(f"Missing required columns: {', '.join(missing)}.", reason="missing_columns")
    try:
        block = np.loadtxt(io.StringIO(text[header_end + 1 :]), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        raise InputError("A value is not a number.", reason="bad_value") from None
    if len(block) < seq_len:
        raise InputError(f"Not enough data points. Need at least {seq_len}, got {len(block)}", reason="too_few_rows")
    return _finish(block[-seq_len:, [index[name] for name in columns]], columns, seq_len)


def _finish(values: np.ndarray, columns: list[str], seq_len: int) -> Window:
    """The contract's checks on the (rows, columns) float64 block of the window, as contract.py does."""
    if not np.isfinite(values).all():
        row, col = np.argwhere(~np.isfinite(values))[0]
        raise InputError(f"Row {row + 1}, column '{columns[col]}': not a finite number.", reason="bad_value")
    prices = values[:, -1]
    if (prices <= 0).any():
        raise InputError(f"Column '{PRICE_COLUMN}': price must be positive.", reason="non_positive_price")
    embeddings = values[:, :-1].astype(np.float32)
    if not np.isfinite(embeddings).all():
        raise InputError("A value overflows float32.", reason="bad_value")
    return Window(embeddings=embeddings, current_price=float(prices[-1]))


def time_ms(fn, runs: int) -> dict:
    """p50 and p99 in ms of ``runs`` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return {"p50_ms": statistics.median(samples), "p99_ms": float(np.percentile(samples, 99))}


# --------------------------------------------------------------------------- forward and predict


@dataclass
class BenchModel:
    """A model to benchmark: its name, checkpoint and config."""

    name: str
    checkpoint: Path
    config: ModelConfig
    label: str


def in_process(model: BenchModel, batches: list[int], runs: int, plain_runs: int, payloads: list[bytes]) -> dict:
    """Fast / pure-PyTorch / plain forward at 2 threads (`measure_forward`), the fast forward (and
    the opt-in bf16 one) at 1 and 2 threads with the plain path at batch 1 beside it, and
    Forecaster.predict (parse + forward + response) at 1 and 2 threads."""
    out: dict = {"threads": {}}
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out["rows"] = measure_forward(model.config, batches, runs, plain_runs, compile_=False)
        torch.manual_seed(0)
        net = XLSTMForecaster(model.config).eval()
        forecaster = Forecaster(load_checkpoint(model.checkpoint), model.name, device=torch.device("cpu"))
        state, blocks, layers = net.state_dict(), model.config.num_blocks, model.config.num_layers

        def plain(x: torch.Tensor) -> torch.Tensor:
            return oracle_forward(state, blocks, layers, x)

        for threads in (1, 2):
            torch.set_num_threads(threads)
            per = {}
            for batch in batches:
                x = torch.randn(batch, model.config.seq_len, model.config.input_size)
                per[batch] = {"fast_ms": median_ms(lambda x=x: net(x), runs)}
                if batch == 1:  # the baseline of the batch-1 target, at this thread count
                    per[batch]["plain_ms"] = median_ms(lambda x=x: plain(x), plain_runs)
                if native.has_bf16():
                    with native.precision("bf16"):
                        per[batch]["bf16_ms"] = median_ms(lambda x=x: net(x), runs)
                chunk = (payloads * (batch // len(payloads) + 1))[:batch]
                per[batch]["predict_ms"] = median_ms(lambda c=chunk: forecaster.predict(c), runs)
            out["threads"][threads] = per
        one = payloads[0]
        out["parse_ms"] = median_ms(lambda: forecaster.parse(one), max(runs, 50))
        if native.has_bf16():
            out["bf16_forecasts"] = bf16_forecast_error(model, payloads)
    finally:
        torch.set_num_threads(previous)
    return out


def bf16_forecast_error(model: BenchModel, payloads: list[bytes]) -> dict:
    """The opt-in bf16 precision against float32 on the model's own checkpoint and requests:
    the largest relative difference of a predicted price, and of a predicted return."""
    loaded = load_checkpoint(model.checkpoint)
    exact = Forecaster(loaded, model.name, device=torch.device("cpu"))
    reduced = Forecaster(load_checkpoint(model.checkpoint), model.name, device=torch.device("cpu"), precision="bf16")
    price_err = return_err = 0.0
    for want, got in zip(exact.predict(payloads), reduced.predict(payloads), strict=True):
        if not (want.ok and got.ok):
            continue
        wanted = np.array(want.body["predicted_prices"])
        current = want.body["current_price"]
        diff = np.array(got.body["predicted_prices"]) - wanted
        price_err = max(price_err, float(np.max(np.abs(diff / wanted))))
        return_err = max(return_err, float(np.max(np.abs(diff / current))))
    return {"requests": len(payloads), "max_rel_price": price_err, "max_abs_return": return_err}


def measure_forward(config: ModelConfig, batches: list[int], runs: int, plain_runs: int, compile_: bool) -> list[dict]:
    """Per batch size: the fast forward, the same without the compiled kernel, the opt-in bf16
    forward (when the build has it; with its norm-relative difference from float32),
    optionally torch.compile, and the plain step-by-step oracle (the baseline of every ratio),
    on one random network; medians in ms, windows/s, and the speed-up over the plain path."""
    torch.manual_seed(0)
    model = XLSTMForecaster(config).eval()
    state = model.state_dict()
    compiled = torch.compile(model) if compile_ else None
    rows = []
    for batch in batches:
        x = torch.randn(batch, config.seq_len, config.input_size)
        row = {"batch": batch, "fast_ms": median_ms(lambda x=x: model(x), runs)}
        if native.has_bf16():
            with native.precision("bf16"):
                row["bf16_ms"] = median_ms(lambda x=x: model(x), runs)
                with torch.inference_mode():
                    low = model(x)
            with torch.inference_mode():
                exact = model(x)
            row["bf16_rel"] = ((low - exact).norm() / exact.norm()).item()
        with native_disabled():
            row["pytorch_ms"] = median_ms(lambda x=x: model(x), runs)
            if compiled is not None:
                start = time.perf_counter()
                with torch.inference_mode():
                    compiled(x)
                row["compile_s"] = time.perf_counter() - start
                row["compiled_ms"] = median_ms(lambda x=x: compiled(x), runs)
        row["plain_ms"] = median_ms(
            lambda x=x: oracle_forward(state, config.num_blocks, config.num_layers, x), plain_runs
        )
        for key in [k for k in row if k.endswith("_ms")]:
            row[key.replace("_ms", "_wps")] = batch / row[key] * 1e3
        row["speedup_vs_plain"] = row["plain_ms"] / row["fast_ms"]
        rows.append(row)
    return rows


def median_ms(fn, runs: int) -> float:
    """Median in ms of ``runs`` calls under inference mode, after one warm-up call."""
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


@contextmanager
def native_disabled():
    """The forward without the compiled kernel (alm_forecaster.native reads this at each call)."""
    previous = os.environ.get("ALM_FORECASTER_NATIVE")
    os.environ["ALM_FORECASTER_NATIVE"] = "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["ALM_FORECASTER_NATIVE"]
        else:
            os.environ["ALM_FORECASTER_NATIVE"] = previous


class Probe:
    """The in-process fast forward, timed right before a server measurement, in this process while
    the server idles. A shared VM's speed can drift by tens of percent within minutes (other
    tenants of the host, invisible from inside), so each server figure is also compared with a
    forward measured next to it."""

    def __init__(self, config: ModelConfig) -> None:
        torch.manual_seed(0)
        self.config = config
        self.net = XLSTMForecaster(config).eval()

    def __call__(self, batch: int, threads: int, runs: int) -> dict:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            x = torch.randn(batch, self.config.seq_len, self.config.input_size)
            cpu0, meter = time.process_time(), CpuMeter()
            ms = median_ms(lambda: self.net(x), runs)
            return {
                "batch": batch,
                "threads": threads,
                "ms": ms,
                "wps": batch / ms * 1e3,
                "foreign_cores": meter.foreign_cores(time.process_time() - cpu0),
            }
        finally:
            torch.set_num_threads(previous)

    def paired(self, threads: int) -> tuple:
        """A ``before_each`` for `bench.load.run_load` at concurrency 1: one timed batch-1 forward
        before every request, so the forward and the requests are measured in the same seconds."""
        x = torch.randn(1, self.config.seq_len, self.config.input_size)
        samples: list[float] = []

        def before_each() -> None:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                with torch.inference_mode():
                    start = time.perf_counter()
                    self.net(x)
                    samples.append((time.perf_counter() - start) * 1e3)
            finally:
                torch.set_num_threads(previous)

        return before_each, samples
