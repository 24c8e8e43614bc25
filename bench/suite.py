"""The whole benchmark run of ``scripts/bench_serve.py``: parse, the in-process figures of each
model, each model served by a private TorchServe at each batchSize, a worker profile, the tuning
sweep and the worker start-up profile; then the JSON, the plot and the Markdown report."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.config import ModelConfig
from alm_forecaster.testing.synthetic import TINY, write_checkpoint
from alm_ops import archive
from alm_ops.launcher import start_torchserve

from . import ROOT
from .cells import CellConfig, request_bodies, serve_cell, tune
from .findings import targets
from .inprocess import BenchModel, Probe, in_process, measure_ohlcv_parse, measure_parse
from .machine import CpuMeter, machine, wait_quiet
from .plot import plot_results
from .profile import profile_lone_requests, profile_worker_start
from .report import read_notes, write_report
from .server import Server, build_archives

SEED_CHECKPOINT = ROOT / "models" / "seed_untrained.pt"
DEFAULT_MODEL = "sp500_xlstm"


def run(args: argparse.Namespace) -> dict:
    """Every measurement of a run with ``scripts/bench_serve.py``'s options; returns the results
    (what the JSON file holds), targets and notes included."""
    load_start = wait_quiet(args.max_load, args.wait_quiet) if args.wait_quiet else os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    results: dict = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "load_start": load_start,
        "models": [],
        "notes": [],
    }
    default = default_config()
    if args.delay_ms is not None:
        default["delay_ms"] = args.delay_ms
    results["default_config"] = default
    try:
        print("parse + validate", flush=True)
        results["parse"] = measure_parse(runs=300 if args.quick else 3000)
        results["parse"]["ohlcv"] = measure_ohlcv_parse(runs=30 if args.quick else 300)
        models = bench_models(args.quick, workdir)
        results["models"] = [measure_in_process(model, args) for model in models]
        store = workdir / "model_store"
        threads = sorted({1, 2, default["threads"]}) if not args.no_tune else sorted({default["threads"]})
        names = build_archives(models, threads, store)
        overrides = {"vmargs": args.vmargs} if args.vmargs else None  # else the shipped config.properties
        with start_torchserve(workdir, store, [], overrides) as client:
            server = Server(client)
            serve_models(server, models, names, default, results["models"], args)
            if models:
                print("profiling a worker under lone requests (py-spy)", flush=True)
                seed = models[0]
                cell = CellConfig(seed.name, 1, default["threads"], default["batch_size"], default["delay_ms"])
                name = names[(seed.name, default["threads"])]
                bodies = request_bodies(seed.config)
                seconds = 4.0 if args.quick else 15.0
                results["worker_profile"] = profile_lone_requests(
                    server, f"{name}.mar", name, cell, bodies, seconds, workdir
                )
            if not args.no_tune:
                results["tuning"] = tune(server, models[0], names, args.requests, args.seconds, args.warmup)
        if not args.quick:
            print("profiling worker start", flush=True)
            results["start_profile"] = profile_worker_start(models[0].checkpoint)
    finally:
        results["load_end"] = os.getloadavg()[0]
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    results["targets"] = targets(results)
    results["notes"] = read_notes()
    return results


def default_config() -> dict:
    """The shipped serving settings (archive_configs/default.yaml) as a cell's settings."""
    config = archive.read_yaml(archive.DEFAULT_CONFIG)
    return {
        "workers": config.get("minWorkers", 1),
        "threads": (config.get("handler") or {}).get("threads", 1),
        "batch_size": config.get("batchSize", 1),
        "delay_ms": config.get("maxBatchDelay", 0),
    }


def bench_models(quick: bool, workdir: Path) -> list[BenchModel]:
    """The tiny model for a smoke run; else the full seed-size model (its checkpoint written when
    missing) and the default model."""
    if quick:
        path = write_checkpoint(workdir / "tiny.pt", TINY, seed=7)
        return [BenchModel("tiny", path, TINY, "Tiny model (input 8, hidden 16; smoke run)")]
    if not SEED_CHECKPOINT.exists():
        SEED_CHECKPOINT.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(SEED_CHECKPOINT, ModelConfig(), seed=0)
        print(f"wrote UNTRAINED seed-format checkpoint {SEED_CHECKPOINT}")
    seed = load_checkpoint(SEED_CHECKPOINT).config
    spec = archive.resolve_spec(DEFAULT_MODEL)
    default = load_checkpoint(spec.checkpoint).config
    return [
        BenchModel(
            "seed_untrained",
            SEED_CHECKPOINT,
            seed,
            f"Full seed-size model (seed_untrained: input {seed.input_size}, hidden {seed.hidden_size}, "
            f"{seed.num_layers} layers, {seed.num_blocks} blocks, {seed.output_size} steps; random weights)",
        ),
        BenchModel(
            DEFAULT_MODEL,
            spec.checkpoint,
            default,
            f"Default model ({DEFAULT_MODEL}: input {default.input_size}, hidden {default.hidden_size}, "
            f"{default.num_layers} layer(s), {default.num_blocks} blocks, {default.output_size} steps)",
        ),
    ]


def measure_in_process(model: BenchModel, args: argparse.Namespace) -> dict:
    """A model's entry of the results with its in-process figures, measured again (twice at most)
    when other processes used the machine meanwhile: others' jobs skew in-process figures."""
    print(f"in process: {model.name}", flush=True)
    payloads = request_bodies(model.config)
    for attempt in range(3):
        meter = CpuMeter()
        cpu0 = time.process_time()
        ip = in_process(model, args.batches, args.runs, args.plain_runs, payloads)
        ip["foreign_cores"] = meter.foreign_cores(time.process_time() - cpu0)
        if ip["foreign_cores"] < 0.2 or attempt == 2 or args.quick:
            break
        print(f"  other processes used {ip['foreign_cores']:.2f} cores meanwhile: measuring again", flush=True)
        if args.wait_quiet:
            wait_quiet(args.max_load, min(args.wait_quiet, 600))
    ip = json.loads(json.dumps(ip))  # int keys -> str, as in the JSON file
    return {
        "name": model.name,
        "label": model.label,
        "in_process": ip,
        "serve": [],
        "csv_shape": f"{model.config.seq_len}-row, {model.config.input_size + 1}-column",
    }


def serve_models(
    server: Server,
    models: list[BenchModel],
    names: dict[tuple[str, int], str],
    default: dict,
    entries: list[dict],
    args: argparse.Namespace,
) -> None:
    """Each model served with the shipped settings at each batchSize, appended to its entry's
    ``serve``: the first cell also scales up by one worker, and the first of the run starts with
    the JVM warm-up."""
    for model, entry in zip(models, entries, strict=True):
        payloads = request_bodies(model.config)
        probe = Probe(model.config)
        name = names[(model.name, default["threads"])]
        for i, batch_size in enumerate(sorted(set(args.batch_sizes) | {default["batch_size"]})):
            cell = CellConfig(
                model.name,
                default["workers"],
                default["threads"],
                batch_size,
                default["delay_ms"] if batch_size > 1 else 0,
            )
            first = not any(e["serve"] for e in entries)
            entry["serve"].append(
                serve_cell(
                    server,
                    f"{name}.mar",
                    name,
                    cell,
                    args.concurrency,
                    payloads,
                    args.requests,
                    args.seconds,
                    scale_up=i == 0 and not args.quick,
                    warmup_s=args.warmup,
                    probe=probe,
                    jvm_warmup_s=args.jvm_warmup if first else 0.0,
                )
            )


def write_outputs(results: dict, args: argparse.Namespace, command: str) -> None:
    """The JSON file (``--json``), the plot and the report; then each target's verdict."""
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    plot_results(results, args.plot)
    write_report(results, args.out, args.plot, command)
    print(f"wrote {args.out} and {args.plot}")
    for t in results["targets"]:
        print(f"{'HOLDS' if t['holds'] else 'FAILS'}: {t['target']}: {t['measured']} ({t['ratio']})")
