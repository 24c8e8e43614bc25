"""scripts/bench_serve.py end to end in its smoke mode (tiny model, a private TorchServe): the
report and the plot are written, every request succeeded, and nothing is left running; the
py-spy profile's summary and the worker start-up profile, which the smoke mode skips."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

from alm_forecaster.testing.synthetic import TINY, write_checkpoint
from bench.profile import START_PHASES, profile_worker_start, summarise_profile

ROOT = Path(__file__).resolve().parent.parent


def test_bench_serve_quick(tmp_path):
    out, plot, data = tmp_path / "BENCH.md", tmp_path / "plot.png", tmp_path / "bench.json"
    work = tmp_path / "tmp"
    work.mkdir()
    command = [sys.executable, str(ROOT / "scripts" / "bench_serve.py"), "--quick"]
    command += ["--out", str(out), "--plot", str(plot), "--json", str(data)]
    kept = "<!-- distributions: begin -->\n## Owned by scripts/bench_quantiles.py\n<!-- distributions: end -->"
    out.write_text(f"# an older report\n\n{kept}\n")
    # TMPDIR: the benchmark's private server (its directory, JVM and workers) lives under tmp_path.
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=900, cwd=ROOT, env={**os.environ, "TMPDIR": str(work)}
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    text = out.read_text()
    for heading in ("## Parse + validate", "### In process", "### TorchServe end to end", "### Worker start"):
        assert heading in text
    assert "an older report" not in text and text.rstrip().endswith(kept)  # another command's section stays
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
    leftover = [p.pid for p in psutil.process_iter() if _uses(p, str(work))]
    assert not leftover, f"processes left running: {leftover}"


def _uses(process: psutil.Process, directory: str) -> bool:
    """Whether a process runs in ``directory`` or names it on its command line (the JVM and the
    workers of the benchmark's server do both)."""
    try:
        return process.cwd().startswith(directory) or any(directory in arg for arg in process.cmdline())
    except psutil.Error:
        return False


def test_summarise_profile_splits_the_wall_time_by_stage():
    raw = "\n".join(
        [
            "<module> (ts/model_service_worker.py:1);XLSTMHandler.handle (xlstm_handler.py:228);"
            "Forecaster.predict (alm_forecaster/forecaster.py:107);"
            "Pipeline.run (alm_forecaster/pipeline.py:80);Pipeline.forward (alm_forecaster/pipeline.py:91) 60",
            "<module> (ts/model_service_worker.py:1);XLSTMHandler.handle (xlstm_handler.py:228);"
            "Forecaster.decode (alm_forecaster/forecaster.py:77);decode (alm_forecaster/csv_protocol.py:20) 10",
            "<module> (x.py:1);retrieve_msg (ts/protocol/otf_message_handler.py:33);"
            "_retrieve_buffer (ts/protocol/otf_message_handler.py:181) 20",
            "<module> (x.py:1);TorchModelServiceWorker.handle_connection (ts/model_service_worker.py:187) 10",
        ]
    )
    summary = summarise_profile(raw, requests_done=10, seconds=1.0)  # 100 ms per request
    assert summary["samples"] == 100 and summary["wall_ms_per_request"] == 100
    assert summary["ms_per_request"] == {
        "forward": 60,
        "waiting for the next request (front end, HTTP, client)": 20,
        "parse + validate": 10,
        "TorchServe: send the response": 10,
    }


def test_worker_start_profile_times_every_phase(tmp_path):
    """`python -m bench.worker_start` in a fresh Python: each phase of a worker's start, in order
    (alm_forecaster.checkpoint.load_step_times for the checkpoint's steps)."""
    checkpoint = write_checkpoint(tmp_path / "tiny.pt", TINY, seed=7)
    profile = profile_worker_start(checkpoint, runs=1)
    assert "error" not in profile, profile.get("error")
    phases = ["python_start", *START_PHASES[1:]]
    assert list(profile)[: len(phases)] == [f"{phase}_s" for phase in phases]
    assert all(value >= 0 for value in profile.values())
    assert profile["all of it again: load_checkpoint + Forecaster_s"] > 0
