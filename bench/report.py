"""The Markdown report of a run (BENCHMARKS.md): the machine, the targets, one section per
model (in process, TorchServe end to end, worker start), where the time goes, the tuning
sweep, the worker start-up profile and the notes (bench/NOTES.md)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from .cells import CellConfig
from .findings import breakdown, default_cell, defaults_rationale, fmt, plain_path

#: The notes the report ends with (Markdown bullets).
NOTES = Path(__file__).with_name("NOTES.md")
#: Earlier measurements, shown above this run's figures.
HISTORY = Path(__file__).with_name("history.json")


def read_notes(path: Path = NOTES) -> list[str]:
    """The bullets of ``path``, one string per bullet (its indented continuation lines joined)."""
    notes: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("* "):
            notes.append(line[2:].strip())
        elif line.startswith("  ") and line.strip() and notes:
            notes[-1] += " " + line.strip()
    return notes


def write_report(results: dict, out: Path, plot: Path | None, command: str) -> None:
    """Write the Markdown report of ``results`` to ``out``, linking the plot relative to it."""
    lines: list[str] = []
    add = lines.append
    m = results["machine"]
    add("# Benchmarks: in process vs TorchServe end to end vs the plain step-by-step path\n")
    add("Reproduce (one command; ~10 min on 2 cores; writes this file and the plot):\n")
    add(f"```bash\n{command}\n```\n")
    add(
        f"Measured {results['date']} on **{m['cpu']}** ({m['nproc']} vCPUs, {m['hypervisor'] or 'bare metal'}, "
        f"{m['cpu_flags']}; L2 {m['l2']}, L3 {m['l3']}), {m['memory_gib']} GiB RAM; {m['os']}; Python {m['python']}, "
        f"torch {m['torch']}, TorchServe {m['torchserve']} (archiver {m['torch_model_archiver']}), {m['java']}; "
        f"compiled kernel {m['native_kernel'] or 'NOT built'}. The load client runs on the same "
        "2 cores as the server (its CPU time per request is in the tables)."
    )
    add(
        f"\nLoad average at start {results['load_start']:.2f}, at end {results['load_end']:.2f}. "
        "*foreign* = cores used by other processes during a measurement (0 = quiet machine).\n"
    )
    add("```\n" + m["free_m"] + "\n```\n")
    foreign = [lv["foreign_cores"] for model in results["models"] for cell in model["serve"] for lv in cell["levels"]]
    foreign += [cell_lv["foreign_cores"] for cell in results.get("tuning", []) for cell_lv in cell["levels"]]
    foreign += [model["in_process"].get("foreign_cores", 0) for model in results["models"]]
    if foreign and max(foreign) > 0.25:
        add(
            f"**Warning: other processes used up to {max(foreign):.2f} cores during some measurements (column "
            "*foreign*); those figures are pessimistic. Rerun on a quiet machine (`--wait-quiet 1800`).**\n"
        )
    _progress_section(results, add)
    targets = results.get("targets")
    if targets:
        add("## Targets (full seed-size model)\n")
        add("| target | measured | ratio vs plain | holds |")
        add("|---|---|---|---|")
        for t in targets:
            add(f"| {t['target']} | {t['measured']} | {t['ratio']} | {'yes' if t['holds'] else '**no**'} |")
        add("")
    if results.get("parse"):
        _parse_section(results["parse"], add)
    for model in results["models"]:
        _model_section(model, add)
    analysis = breakdown(results)
    if analysis:
        add("## Where the time goes (full seed-size model, shipped defaults)\n")
        for line in analysis:
            add(f"* {line}")
        add("")
    if results.get("tuning"):
        _tuning_section(results["tuning"], add, results.get("default_config"))
        for line in defaults_rationale(results):
            add(f"* {line}")
        add("")
    if results.get("start_profile"):
        _start_section(results, add)
    if results.get("notes"):
        add("## Notes\n")
        for note in results["notes"]:
            add(f"* {note}")
        add("")
    if plot is not None:
        add(f"![latency vs throughput]({os.path.relpath(plot, out.parent)})\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = kept_sections(out.read_text()) if out.exists() else []
    out.write_text("\n".join(lines + kept) + "\n")


def publish_section(text: str, results: object, out: Path | None, name: str) -> None:
    """A benchmark's Markdown section on stdout, its raw figures as JSON on stderr, and with
    ``out`` the section written into that file (`write_marked_section`)."""
    print(text)
    print(json.dumps(results, indent=1), file=sys.stderr)
    if out:
        write_marked_section(text, out, name)


def write_marked_section(text: str, path: Path, name: str) -> None:
    """Replace (or append) the section ``<!-- NAME: begin -->`` .. ``<!-- NAME: end -->`` of a
    report with ``text`` (the sections other commands own, see `kept_sections`)."""
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    current = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}{end}\n"
    if begin in current and end in current:
        head, _, rest = current.partition(begin)
        _, _, tail = rest.partition(end)
        current = head + block + tail.lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    path.write_text(current)


def kept_sections(text: str) -> list[str]:
    """The sections other commands own in the file (``<!-- NAME: begin -->`` to ``<!-- NAME: end -->``,
    e.g. scripts/bench_quantiles.py's): a rewrite of the report keeps them, at its end."""
    kept = []
    for match in re.finditer(r"<!-- ([\w-]+): begin -->.*?<!-- \1: end -->", text, flags=re.S):
        kept += ["", match.group(0)]
    return kept


def _progress_section(results: dict, add) -> None:
    """The full seed-size model from the original service to this run, one row each."""
    seed, cell = default_cell(results)
    if seed is None:
        return
    ip = seed["in_process"]
    rows = {r["batch"]: r for r in ip["rows"]}
    levels = {lv["concurrency"]: lv for lv in (cell or {}).get("levels", [])}
    b32 = rows.get(32, {})
    now = {
        "label": f"this run ({results['date']})",
        "source": "this file",
        "b1_1t_ms": ip["threads"]["1"].get("1", {}).get("fast_ms"),
        "b1_2t_ms": rows.get(1, {}).get("fast_ms"),
        "b32_1t_wps": 32 / ip["threads"]["1"]["32"]["fast_ms"] * 1e3 if "32" in ip["threads"]["1"] else None,
        "b32_2t_wps": b32.get("fast_wps"),
        "served_c1_p50_ms": levels.get(1, {}).get("p50_ms"),
        "served_c32_rps": levels.get(32, {}).get("throughput"),
        "bf16_b32_2t_wps": b32.get("bf16_wps"),
    }
    add("## Progress (full seed-size model)\n")
    add(
        "Earlier rows from bench/history.json (where they were measured is in its `source` field); the last row is "
        "this run. *served*: TorchServe with the shipped defaults, client on the same 2 cores.\n"
    )
    add(
        "| | batch 1, 1 thread ms | batch 1, 2 threads ms | batch 32, 1 thread win/s | batch 32, 2 threads win/s | "
        "bf16 batch 32, 2 threads win/s | served c=1 p50 ms | served c=32 req/s |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for row in [*json.loads(HISTORY.read_text())["rows"], now]:
        add(
            f"| {row['label']} | {fmt(row['b1_1t_ms'], 2)} | {fmt(row['b1_2t_ms'], 2)} | {fmt(row['b32_1t_wps'])} | "
            f"{fmt(row['b32_2t_wps'])} | {fmt(row['bf16_b32_2t_wps'])} | {fmt(row['served_c1_p50_ms'])} | "
            f"{fmt(row['served_c32_rps'], 2 if (row['served_c32_rps'] or 0) < 10 else 1)} |"
        )
    add("")


def _rel(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def _parse_section(parse: dict, add) -> None:
    add(
        f"## Parse + validate one request ({parse['rows']}-row, {parse['columns']}-column CSV, "
        f"{parse['bytes']} bytes)\n"
    )
    add(
        f"`scripts/bench_parse.py` (median and p99 of {parse['runs']} runs; the same checks on every path, and the "
        f"same window out; budget {parse['limit_ms']} ms):\n"
    )
    add("| path | p50 ms | p99 ms |")
    add("|---|---|---|")
    for name, r in parse["paths"].items():
        add(f"| {name} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} |")
    add("")
    ohlcv = parse.get("ohlcv")
    if ohlcv:
        add(
            f"The README's raw OHLCV example (`{ohlcv['file']}`, {ohlcv['rows']} rows) for sp500_xlstm, "
            f"`Forecaster.parse` (CSV, 71 features, standardised, PCA -> window {ohlcv['window']}): "
            f"p50 {fmt(ohlcv['p50_ms'], 3)} ms, p99 {fmt(ohlcv['p99_ms'], 3)} ms ({ohlcv['runs']} runs).\n"
        )


def _model_section(model: dict, add) -> None:
    ip = model["in_process"]
    plain_b1, plain_best = plain_path(model)
    add(f"## {model['label']}\n")
    add(
        "### In process\n\nMedians of several runs after a warm-up. *fast*: the served forward (compiled kernel); "
        "*pytorch*: the same forward without the kernel; *plain*: the step-by-step oracle "
        "(alm_forecaster/testing/oracle.py), the baseline of every ratio. *predict*: `Forecaster.predict` on CSV "
        "payloads (parse + validate + forward + response), i.e. the handler's work without TorchServe.\n"
    )
    add(
        "| batch | fast 2t ms | win/s | pytorch 2t ms | plain 2t ms | plain win/s | fast vs plain | fast 1t ms | "
        "win/s | predict 1t ms | predict 2t ms | bf16 1t ms | bf16 2t win/s | bf16 vs fp32 |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in ip["rows"]:
        b = row["batch"]
        t1, t2 = ip["threads"]["1"][str(b)], ip["threads"]["2"][str(b)]
        add(
            f"| {b} | {fmt(row['fast_ms'], 2)} | {fmt(row['fast_wps'])} | {fmt(row['pytorch_ms'], 2)} | "
            f"{fmt(row['plain_ms'])} | {fmt(row['plain_wps'])} | {fmt(row['speedup_vs_plain'])}x | "
            f"{fmt(t1['fast_ms'], 2)} | {fmt(b / t1['fast_ms'] * 1e3)} | {fmt(t1['predict_ms'], 2)} | "
            f"{fmt(t2['predict_ms'], 2)} | {fmt(t1.get('bf16_ms'), 2)} | {fmt(row.get('bf16_wps'))} | "
            f"{_rel(row.get('bf16_rel'))} |"
        )
    add(
        f"\nParse + validate of one {model['csv_shape']} CSV (`Forecaster.parse`): {fmt(ip['parse_ms'], 3)} ms. "
        f"Foreign load during these runs: {fmt(ip.get('foreign_cores'), 2)} cores."
    )
    low = ip.get("bf16_forecasts")
    if low:
        add(
            f"*bf16* (opt-in, `handler.precision: bf16`): bfloat16 weights and inputs of every product, float32 "
            f"sums and cell state; *bf16 vs fp32*: norm-relative difference of the network's outputs on random "
            f"windows. On this model's checkpoint and requests ({low['requests']}), the largest difference of a "
            f"predicted price is {low['max_rel_price'] * 1e4:.1f} bp of the price (a predicted return off by "
            f"up to {low['max_abs_return'] * 1e4:.1f} bp)."
        )
    add("")
    add(
        "### TorchServe end to end\n\nClosed loop, keep-alive connections, `Content-Type: text/csv`; *p50..p99*: "
        "client-side latency; *vs plain*: plain batch-1 latency / p50 and throughput / the plain path's best "
        "throughput. *queue*, *frontend*: TorchServe's mean QueueTime and inference latency per request "
        "(`ts_*_microseconds` deltas); *handler*, *predict*: median HandlerTime / PredictionTime per batch; "
        "*batch*: mean requests per batch; CPU ms per request of the client, the JVM and the workers; "
        "*req/s* at c=1 is 1 / mean latency (in-process forwards run between its requests, see below); "
        "*next to it*: the in-process fast forward timed just before the level (c=1: batch 1 with the worker's "
        "threads, ms; c=32: batch 32 with 2 threads, windows/s).\n"
    )
    add(
        "| config | conc | ok | err | p50 ms | p90 | p99 | req/s | next to it | vs plain (lat / thr) | queue ms | "
        "frontend ms | handler ms | predict ms | batch | CPU ms/req client / JVM / workers | RSS MB JVM / workers | "
        "foreign |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in model["serve"]:
        label = CellConfig(**cell["config"]).label
        for lv in cell["levels"]:
            add(
                f"| {label} | {lv['concurrency']} | {lv['requests']} | {lv['errors']} | {fmt(lv['p50_ms'])} | "
                f"{fmt(lv['p90_ms'])} | {fmt(lv['p99_ms'])} | {fmt(lv['throughput'])} | {_probe(lv)} | "
                f"{fmt(plain_b1 / lv['p50_ms'])}x / {fmt(lv['throughput'] / plain_best)}x | "
                f"{fmt(lv.get('queue_ms'))} | {fmt(lv.get('frontend_ms'))} | {fmt(lv.get('HandlerTime_p50_ms'))} | "
                f"{fmt(lv.get('PredictionTime_p50_ms'))} | {fmt(lv.get('mean_batch'))} | "
                f"{fmt(lv['client_cpu_ms_per_req'], 2)} / {fmt(lv['jvm_cpu_ms_per_req'], 2)} / "
                f"{fmt(lv['worker_cpu_ms_per_req'], 2)} | {fmt(lv['rss_jvm_mb'], 0)} / "
                f"{', '.join(fmt(r, 0) for r in lv['rss_workers_mb'])} | {fmt(lv['foreign_cores'], 2)} |"
            )
    errors = [s for c in model["serve"] for lv in c["levels"] for s in lv["error_samples"]]
    if errors:
        add("\nError samples: " + "; ".join(f"`{e}`" for e in errors[:5]))
    add("\n### Worker start\n")
    add(
        "*POST -> READY*: registration on the running JVM (synchronous) until the worker is READY, or the "
        "scale-up call; *unpack*: POST until the worker process is spawned (the archive is extracted); then "
        "the worker's phases from the log timestamps.\n"
    )
    add(
        "| start | POST -> READY s | unpack s | TorchServe WorkerLoadTime ms | spawn -> Python up (imports) s | "
        "-> LOAD s | -> handler ready s | -> frontend READY s |"
    )
    add("|---|---|---|---|---|---|---|---|")
    for cell in model["serve"]:
        for kind, data in (("register", cell["start"]), ("scale-up", cell.get("scale"))):
            if not data:
                continue
            total = data.get("register_s", data.get("scale_up_s"))
            for ph in data["phases"]:
                add(
                    f"| {kind} {CellConfig(**cell['config']).label} {ph['worker']} | {fmt(total, 2)} | "
                    f"{fmt(data.get('post_to_spawn_s'), 2)} | "
                    f"{', '.join(fmt(v, 0) for v in data.get('worker_load_ms', [])) or '-'} | "
                    f"{fmt(ph.get('spawn->python_up_s'), 2)} | {fmt(ph.get('python_up->load_cmd_s'), 2)} | "
                    f"{fmt(ph.get('load_cmd->handler_ready_s'), 2)} | {fmt(ph.get('handler_ready->loaded_s'), 2)} |"
                )
    add("")


def _probe(level: dict) -> str:
    probe = level.get("probe")
    if not probe:
        return "-"
    return f"{probe['ms']:.1f} ms" if probe["batch"] == 1 else f"{probe['wps']:.0f}/s"


def _tuning_section(tuning: list[dict], add, shipped: dict | None = None) -> None:
    add("## Tuning: workers x torch threads x batchSize x maxBatchDelay (full seed-size model)\n")
    add(
        "*c=1 over fwd*: p50 minus the batch-1 forward (worker's threads) timed just before; *c=32 / fwd*: "
        "throughput over the in-process batch-32 forward (2 threads) timed just before.\n"
    )
    add(
        "| config | c=1 p50 ms | c=1 p99 | c=1 over fwd ms | c=8 req/s | c=8 p50 | c=32 req/s | c=32 / fwd | "
        "c=32 p50 | c=32 p99 | c=32 batch | errors | foreign (max) |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for cell in tuning:
        lv = {x["concurrency"]: x for x in cell["levels"]}
        one, eight, many = lv.get(1, {}), lv.get(8, {}), lv.get(32, {})
        over = one["p50_ms"] - one["probe"]["ms"] if one.get("probe") else None
        share = many["throughput"] / many["probe"]["wps"] * 100 if many.get("probe") else None
        label = CellConfig(**cell["config"]).label
        if shipped and all(cell["config"][k] == shipped[k] for k in shipped):
            label = f"**{label} (shipped)**"
        add(
            f"| {label} | {fmt(one.get('p50_ms'))} | {fmt(one.get('p99_ms'))} | "
            f"{fmt(over)} | {fmt(eight.get('throughput'))} | {fmt(eight.get('p50_ms'))} | "
            f"{fmt(many.get('throughput'))} | {fmt(share, 0)}% | "
            f"{fmt(many.get('p50_ms'))} | {fmt(many.get('p99_ms'))} | {fmt(many.get('mean_batch'))} | "
            f"{sum(x['errors'] for x in cell['levels'])} | "
            f"{fmt(max(x['foreign_cores'] for x in cell['levels']), 2)} |"
        )
    add("")


def _start_section(results: dict, add) -> None:
    prof = results["start_profile"]
    add("## Worker start-up profile (full seed-size model)\n")
    add("A fresh Python doing what a TorchServe worker does before it is READY (median of 3):\n")
    add("| phase | s |")
    add("|---|---|")
    for key, value in prof.items():
        add(f"| {key.removesuffix('_s')} | {fmt(value, 3)} |")
    add("")
