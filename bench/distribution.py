"""What forecast distributions cost: the quantile head against a point head of the same network,
and one 200-series JSON request against 200 single-price requests through a real TorchServe.

    in-process: the shipped quantile model (25 outputs: 5 steps x 5 levels, non-crossing head,
    calibration, scaling) vs the same network with a 5-output point head, on the same windows;
    batch 1 and 32, forward alone and Forecaster.predict (parse + forward + response)
    served: a private TorchServe with the quantile model (the shipped archive settings), one
    JSON request of 200 series (one handler call, one batched forward) vs the same 200 series
    as 200 CSV requests from 8 clients; latency and series per second
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from alm_forecaster.checkpoint import build_checkpoint, load_checkpoint
from alm_forecaster.close_features import ClosePipeline
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.kinds import PRICE
from alm_forecaster.kserve import request_document
from alm_forecaster.testing.synthetic import price_csv, price_series
from alm_ops import archive
from alm_ops.launcher import TorchServe, start_torchserve

from . import ROOT
from .inprocess import median_ms

CHECKPOINT = ROOT / "models" / "alm_quantiles.pt"
#: Its section of BENCHMARKS.md (between <!-- distributions: begin/end -->).
SECTION = "distributions"
MODEL = "alm_quantiles"
SERIES = 200


def point_twin() -> Forecaster:
    """The quantile model's network with a 5-output head (its first 5 rows): a point model of
    the same size, for the cost comparison only (its forecasts mean nothing)."""
    payload = torch.load(CHECKPOINT, weights_only=True)
    state = dict(payload["model_state_dict"])
    state["output_head.3.weight"] = state["output_head.3.weight"][:5].clone()
    state["output_head.3.bias"] = state["output_head.3.bias"][:5].clone()
    config = {**payload["config"], "output_size": 5}
    twin = build_checkpoint(
        {"model_state_dict": state, "config": config, "feature_pipeline": payload["feature_pipeline"]}, CHECKPOINT
    )
    return Forecaster(twin, "point_twin", device=torch.device("cpu"))


def head_overhead(runs: int = 200, threads: int = 1) -> dict:
    """Median ms of forward and of predict, quantile vs point head, batch 1 and 32."""
    torch.set_num_threads(threads)
    quantile = Forecaster(load_checkpoint(CHECKPOINT), MODEL, device=torch.device("cpu"))
    point = point_twin()
    pipeline = ClosePipeline()
    out = {"threads": threads, "runs": runs, "batches": {}}
    for batch in (1, 32):
        bodies = [price_csv(300, seed=k) for k in range(batch)]
        windows = [quantile.parse(b) for b in bodies]
        assert all(w.scale for w in windows) and pipeline.rows_needed(quantile.seq_len) == 274
        forwards = {
            "point": lambda w=windows: point.forward(w),
            # the network, then the head: non-crossing quantiles, calibration, volatility scaling
            "quantile": lambda w=windows: quantile.head.forecast(quantile.forward(w), w, [PRICE] * len(w)),
        }
        predicts = {
            name: (lambda fc=fc, b=bodies: fc.predict(b)) for name, fc in (("point", point), ("quantile", quantile))
        }
        row = {}
        for what, fns, count in (("forward", forwards, runs), ("predict", predicts, max(runs // 4, 20))):
            point_ms, quantile_ms, ratios = paired(fns["point"], fns["quantile"], count)
            row[f"point_{what}_ms"], row[f"quantile_{what}_ms"] = point_ms, quantile_ms
            row[f"{what}_ratio"] = ratios
        out["batches"][batch] = row
    return out


def paired(a, b, runs: int) -> tuple[float, float, float]:
    """Median ms of ``a`` and of ``b`` run alternately (A B A B ...), and the median of the
    pair-by-pair ratios b/a: a busy machine slows both sides of a pair alike."""
    a_ms, b_ms = [], []
    for _ in range(runs):
        a_ms.append(median_ms(a, 1))
        b_ms.append(median_ms(b, 1))
    ratios = [y / x for x, y in zip(a_ms, b_ms, strict=True)]
    return statistics.median(a_ms), statistics.median(b_ms), statistics.median(ratios)


def served(workdir: Path, repeats: int = 5, clients: int = 8) -> dict:
    """One 200-series JSON request vs 200 CSV requests, through a private TorchServe."""
    store = workdir / "store"
    store.mkdir(parents=True)
    archive.build(archive.resolve_spec(MODEL, CHECKPOINT), store)
    series = [(f"s{k}", *price_series(300, seed=k)) for k in range(SERIES)]
    document = json.dumps(request_document(MODEL, series)).encode()
    bodies = [price_csv(300, seed=k) for k in range(SERIES)]
    with start_torchserve(workdir / "ts", store, [MODEL]) as server:
        json_ms = [_timed(server, data=document, headers={"Content-Type": "application/json"}) for _ in range(repeats)]
        answer = server.predict(MODEL, data=document, headers={"Content-Type": "application/json"}).json()
        assert answer["status"] == "completed" and len(answer["outputs"]) == SERIES, answer.get("status")
        singles = []
        for _ in range(repeats):
            started = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                codes = list(pool.map(lambda b: _status(server, b), bodies))
            assert codes == [200] * SERIES, set(codes)
            singles.append((time.perf_counter() - started) * 1e3)
    return {
        "series": SERIES,
        "rows_per_series": 300,
        "repeats": repeats,
        "json_request_ms": statistics.median(json_ms),
        "json_series_per_s": SERIES / statistics.median(json_ms) * 1e3,
        "single_requests_ms": statistics.median(singles),
        "single_series_per_s": SERIES / statistics.median(singles) * 1e3,
        "single_clients": clients,
    }


def _timed(server: TorchServe, **kwargs) -> float:
    started = time.perf_counter()
    response = server.predict(MODEL, **kwargs)
    assert response.status_code == 200, response.text[:300]
    return (time.perf_counter() - started) * 1e3


def _status(server: TorchServe, body: bytes) -> int:
    return server.predict(MODEL, data=body, headers={"Content-Type": "text/csv"}).status_code


def run(runs: int, repeats: int) -> dict:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        return {"load_average_1min": load, "head": head_overhead(runs), "served": served(Path(tmp), repeats)}


def markdown(results: dict, command: str) -> str:
    head, srv = results["head"], results["served"]
    lines = [
        "## Forecast distributions: what the quantiles cost",
        "",
        f"`{command}` (1 torch thread; {head['runs']} alternating point/quantile pairs, medians, the ratio is "
        "the median of the pair-by-pair ratios; a private TorchServe with the shipped archive settings for the "
        f"served part; load average {results['load_average_1min']:.1f} when it started).",
        "",
        "| batch | forward point / quantile (ms) | ratio | predict point / quantile (ms) | ratio |",
        "|---|---|---|---|---|",
    ]
    for batch, row in head["batches"].items():
        lines.append(
            f"| {batch} | {row['point_forward_ms']:.3f} / {row['quantile_forward_ms']:.3f} "
            f"| {row['forward_ratio']:.3f} | {row['point_predict_ms']:.3f} / {row['quantile_predict_ms']:.3f} "
            f"| {row['predict_ratio']:.3f} |"
        )
    lines += [
        "",
        "The point twin is the same network with a 5-output head; the quantile forward includes the "
        "non-crossing head, the calibration offsets and the volatility scaling (target: at most 10% over the "
        "point forward).",
        "",
        f"Served, {srv['series']} series of {srv['rows_per_series']} daily prices: one JSON request (one handler "
        f"call, one batched forward) took {srv['json_request_ms']:.0f} ms ({srv['json_series_per_s']:.0f} series/s); "
        f"the same series as {srv['series']} CSV requests from {srv['single_clients']} clients took "
        f"{srv['single_requests_ms']:.0f} ms ({srv['single_series_per_s']:.0f} series/s); medians of "
        f"{srv['repeats']} repeats.",
        "",
    ]
    return "\n".join(lines)
