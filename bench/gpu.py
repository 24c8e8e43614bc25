"""The forward on a CUDA device: batch-1 latency and batch-256 throughput, eager and replayed
from a CUDA graph (the recurrence has a fixed shape per batch size, so one capture per batch
size replays the whole forward with one launch), each checked against the CPU forward.

Run by ``scripts/bench_gpu.py`` (and ``scripts/gpu_check.sh`` on a GPU machine)."""

from __future__ import annotations

import statistics
import time

import torch

from alm_forecaster.config import ModelConfig
from alm_forecaster.model import XLSTMForecaster


def measure_gpu(config: ModelConfig, batches: list[int], runs: int, device: str = "cuda") -> dict:
    """Per batch size: eager and graph-replay medians (ms, windows/s) and the error against the CPU."""
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # float32 as on the CPU
    torch.manual_seed(0)
    model = XLSTMForecaster(config).eval()
    rows = []
    with torch.inference_mode():
        for batch in batches:
            x = torch.randn(batch, config.seq_len, config.input_size, generator=torch.Generator().manual_seed(batch))
            cpu = model.to("cpu")(x[: min(batch, 64)])
            model.to(device)
            static = x.to(device)
            eager_ms = _median_ms(lambda static=static: model(static), runs, device)
            eager_out = model(static)
            graph, graph_out = _capture(model, static, device)
            graph_ms = _median_ms(graph.replay, runs, device)
            rows.append(
                {
                    "batch": batch,
                    "eager_ms": eager_ms,
                    "eager_wps": batch / eager_ms * 1e3,
                    "graph_ms": graph_ms,
                    "graph_wps": batch / graph_ms * 1e3,
                    "graph_speedup": eager_ms / graph_ms,
                    "rel_vs_cpu": _rel(eager_out[: len(cpu)].cpu(), cpu),
                    "graph_rel_vs_eager": _rel(graph_out.cpu(), eager_out.cpu()),
                }
            )
    return {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "config": config.to_dict(),
        "runs": runs,
        "rows": rows,
    }


def _capture(model: torch.nn.Module, static: torch.Tensor, device: str) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """Capture one forward on ``static`` (after warm-up runs on a side stream, as CUDA graphs need)."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            model(static)
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(static)
    graph.replay()
    torch.cuda.synchronize(device)
    return graph, out


def _median_ms(fn, runs: int, device: str) -> float:
    fn()
    torch.cuda.synchronize(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()
