"""scripts/bench_serve.py end to end in its smoke mode (tiny model, a private TorchServe, ~30 s):
the report and the plot are written, every request succeeded, and nothing is left running."""

from __future__ import annotations

import json

import psutil

from scripts import bench_serve


def test_bench_serve_quick(tmp_path):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    out, plot, data = tmp_path / "BENCH.md", tmp_path / "plot.png", tmp_path / "bench.json"
    assert bench_serve.main(["--quick", "--out", str(out), "--plot", str(plot), "--json", str(data)]) == 0

    text = out.read_text()
    for heading in ("## Parse + validate", "### In process", "### TorchServe end to end", "### Worker start"):
        assert heading in text
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads(data.read_text())
    (model,) = results["models"]
    levels = [lv for cell in model["serve"] for lv in cell["levels"]]
    assert levels and all(lv["errors"] == 0 and lv["requests"] > 0 for lv in levels)
    assert all(lv["p50_ms"] > 0 and lv["throughput"] > 0 and lv["rss_jvm_mb"] > 0 for lv in levels)
    assert any(lv.get("mean_batch", 0) > 1 for lv in levels), "a batchSize > 1 cell should form batches"
    assert model["serve"][0]["start"]["phases"], "the worker's start-up phases come from the log"
    profile = results["worker_profile"]  # py-spy attached to a worker (requirements-dev.txt)
    assert profile["requests"] > 0 and profile["ms_per_request"]["forward"] > 0
    assert "Lone request, from inside the worker (py-spy" in text
    project = next(iter(results["parse"]["paths"].values()))
    assert project["p50_ms"] > 0
    leftover = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not leftover, f"processes left running: {leftover}"


def test_summarise_profile_splits_the_wall_time_by_stage():
    raw = "\n".join(
        [
            "<module> (ts/model_service_worker.py:1);XLSTMHandler.handle (xlstm_handler.py:228);"
            "Forecaster.predict (alm_forecaster/forecaster.py:107);"
            "Forecaster.forward (alm_forecaster/forecaster.py:91) 60",
            "<module> (ts/model_service_worker.py:1);XLSTMHandler.handle (xlstm_handler.py:228);"
            "Forecaster.parse (alm_forecaster/forecaster.py:77) 10",
            "<module> (x.py:1);retrieve_msg (ts/protocol/otf_message_handler.py:33);"
            "_retrieve_buffer (ts/protocol/otf_message_handler.py:181) 20",
            "<module> (x.py:1);TorchModelServiceWorker.handle_connection (ts/model_service_worker.py:187) 10",
        ]
    )
    summary = bench_serve.summarise_profile(raw, requests_done=10, seconds=1.0)  # 100 ms per request
    assert summary["samples"] == 100 and summary["wall_ms_per_request"] == 100
    assert summary["ms_per_request"] == {
        "forward": 60,
        "waiting for the next request (front end, HTTP, client)": 20,
        "parse + validate": 10,
        "TorchServe: send the response": 10,
    }
