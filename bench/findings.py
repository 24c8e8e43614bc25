"""What the report concludes from a run's figures: the issue's targets, where the time of a
request goes, and why the shipped defaults; each as lines of Markdown text."""

from __future__ import annotations

import numpy as np

from .cells import CellConfig


def targets(results: dict) -> list[dict]:
    """The issue's targets for the seed model and the shipped defaults, from this run's figures.

    Each server figure is judged against the in-process forward measured right next to it (the
    level's probe); the same comparison against the in-process table from the start of the run
    is shown too."""
    seed, cell = default_cell(results)
    if cell is None:
        return []
    plain_b1, plain_best = plain_path(seed)
    ip = seed["in_process"]
    threads = str(results["default_config"]["threads"])
    start_b1 = ip["threads"][threads]["1"]["fast_ms"]
    start_b32 = next(r for r in ip["rows"] if r["batch"] == 32)["fast_wps"]
    lv = {x["concurrency"]: x for x in cell["levels"]}
    out = kernel_targets(seed)
    if 1 in lv:
        p50 = lv[1]["p50_ms"]
        ref = (lv[1].get("probe") or {}).get("ms", start_b1)
        out.append(
            {
                "target": f"c=1: p50 <= forward p50 + 3 ms (batch-1 fast forward, {threads} thread(s), as the worker)",
                "measured": f"p50 {p50:.2f} ms; forward next to it {ref:.2f} ms: +{p50 - ref:.2f} ms (forward at the "
                f"start of the run {start_b1:.2f} ms: +{p50 - start_b1:.2f} ms)",
                "ratio": f"plain b1 {plain_b1:.0f} ms / p50 = {plain_b1 / p50:.1f}x",
                "holds": p50 <= ref + 3,
            }
        )
    if 32 in lv:
        thr = lv[32]["throughput"]
        ref = (lv[32].get("probe") or {}).get("wps", start_b32)
        out.append(
            {
                "target": "c=32: throughput >= 85% of the in-process batch-32 forward (2 threads), zero errors",
                "measured": f"{thr:.1f} req/s, {lv[32]['errors']} errors; forward next to it {ref:.1f} windows/s: "
                f"{thr / ref * 100:.0f}% (at the start of the run {start_b32:.1f}/s: "
                f"{thr / start_b32 * 100:.0f}%)",
                "ratio": f"{thr / plain_best:.1f}x the plain path's best ({plain_best:.1f}/s)",
                "holds": thr >= 0.85 * ref and lv[32]["errors"] == 0,
            }
        )
    begin = cell["start"]
    load_ms = max(begin["worker_load_ms"]) if begin["worker_load_ms"] else float("nan")
    scale = [c["scale"]["scale_up_s"] for c in seed["serve"] if c.get("scale")]
    worst = max([begin["register_s"], *scale])
    out.append(
        {
            "target": "worker start (archive load + model ready) <= 3 s after the JVM is up",
            "measured": f"registration POST -> READY {begin['register_s']:.2f} s (archive unpack "
            f"{fmt(begin.get('post_to_spawn_s'), 2)} s); scale-up {', '.join(f'{x:.2f}' for x in scale)} s; "
            f"TorchServe WorkerLoadTime {load_ms / 1e3:.2f} s",
            "ratio": f"= {worst / (plain_b1 / 1e3):.1f} plain batch-1 forwards ({plain_b1 / 1e3:.2f} s each)",
            "holds": worst <= 3.0,
        }
    )
    return out


def kernel_targets(seed: dict) -> list[dict]:
    """The forward's own targets (in process, this run's plain path as the baseline)."""
    ip = seed["in_process"]
    plain_b1, _ = plain_path(seed)
    rows = {r["batch"]: r for r in ip["rows"]}
    out = []
    one = ip["threads"]["1"].get("1")
    if one:
        ms, plain = one["fast_ms"], one.get("plain_ms", plain_b1)
        out.append(
            {
                "target": "batch 1, 1 thread: <= 10 ms and >= 9x the plain path (1 thread)",
                "measured": f"{ms:.2f} ms" + (f"; opt-in bf16 {one['bf16_ms']:.2f} ms" if "bf16_ms" in one else ""),
                "ratio": f"plain b1 {plain:.0f} ms / {ms:.2f} ms = {plain / ms:.1f}x",
                "holds": ms <= 10 and plain / ms >= 9,
            }
        )
    if 32 in rows:
        row = rows[32]
        out.append(
            {
                "target": "batch 32, 2 threads, float32: >= 230 windows/s",
                "measured": f"{row['fast_wps']:.1f} windows/s",
                "ratio": f"{row['speedup_vs_plain']:.1f}x the plain path at batch 32",
                "holds": row["fast_wps"] >= 230,
            }
        )
        if "bf16_wps" in row:
            out.append(
                {
                    "target": "batch 32, 2 threads, opt-in bf16: >= 450 windows/s, error stated",
                    "measured": f"{row['bf16_wps']:.1f} windows/s; outputs {row['bf16_rel']:.1e} (norm-relative) "
                    "from float32 on this random network",
                    "ratio": f"{row['plain_ms'] / row['bf16_ms']:.1f}x the plain path at batch 32",
                    "holds": row["bf16_wps"] >= 450,
                }
            )
    return out


def default_cell(results: dict) -> tuple[dict, dict] | tuple[None, None]:
    """The full seed-size model's results and its cell with the shipped settings (None when absent)."""
    seed = next((m for m in results["models"] if m["name"] == "seed_untrained"), None)
    if seed is None:
        return None, None
    default = results["default_config"]
    for cell in seed["serve"]:
        if all(cell["config"][k] == default[k] for k in ("workers", "threads", "batch_size", "delay_ms")):
            return seed, cell
    return seed, None


def plain_path(model: dict) -> tuple[float, float]:
    """The plain path's batch-1 latency (ms) and best throughput (windows/s) of this run."""
    rows = model["in_process"]["rows"]
    b1 = next((r["plain_ms"] for r in rows if r["batch"] == 1), rows[0]["plain_ms"])
    return b1, max(r["plain_wps"] for r in rows)


def fmt(value: float | None, digits: int = 1) -> str:
    """A figure for a table: ``digits`` decimals, "-" when missing or not finite."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def breakdown(results: dict) -> list[str]:
    """The default cell's latency at c=1 and CPU per request at c=32, split by stage."""
    profile = profile_lines(results.get("worker_profile"))
    seed, cell = default_cell(results)
    if cell is None:
        return profile
    out: list[str] = []
    ip = seed["in_process"]
    threads = str(results["default_config"]["threads"])
    lv = {x["concurrency"]: x for x in cell["levels"]}
    if 1 in lv and "frontend_ms" in lv[1]:
        one = lv[1]
        forward = (one.get("probe") or {}).get("ms", ip["threads"][threads]["1"]["fast_ms"])
        handler = one.get("HandlerTime_p50_ms", float("nan"))
        worker_forward, worker_parse = one.get("ForwardTime_p50_ms", float("nan")), one.get("ParseTime_p50_ms", 0)
        out.append(
            f"Lone request (c=1): client p50 {one['p50_ms']:.2f} ms, in-process forward next to it {forward:.2f} ms "
            f"(+{one['p50_ms'] - forward:.2f} ms). Inside: handler {handler:.2f} ms = forward in the worker "
            f"{worker_forward:.2f} ms + parse {worker_parse:.2f} ms (in-process, warm: {ip['parse_ms']:.2f} ms) + "
            f"response and metrics {handler - worker_forward - worker_parse:.2f} ms; worker protocol "
            f"{one['frontend_ms'] - one.get('queue_ms', 0) - one.get('PredictionTime_p50_ms', 0):.2f} ms (TorchServe's "
            f"mean latency minus queue and PredictionTime); queue {one.get('queue_ms', 0):.2f} ms (maxBatchDelay "
            f"{cell['config']['delay_ms']} ms); HTTP, JVM and client {one['p50_ms'] - one['frontend_ms']:.2f} ms "
            "(client p50 minus TorchServe's mean latency)."
        )
    out += profile
    if 32 in lv:
        many = lv[32]
        cpu = many["client_cpu_ms_per_req"] + many["jvm_cpu_ms_per_req"] + many["worker_cpu_ms_per_req"]
        batch = many.get("mean_batch", 0)
        near = min(ip["threads"]["1"], key=lambda b: abs(int(b) - batch)) if batch else "32"
        per_window = ip["threads"]["1"][near]["fast_ms"] / int(near)
        served = many.get("ForwardTime_p50_ms", float("nan")) / batch if batch else float("nan")
        reference = (many.get("probe") or {}).get("wps") or next(r for r in ip["rows"] if r["batch"] == 32)["fast_wps"]
        out.append(
            f"Saturated (c=32): {many['throughput']:.1f} req/s in batches of {batch:.1f}. CPU per request: workers "
            f"{many['worker_cpu_ms_per_req']:.2f} ms, JVM {many['jvm_cpu_ms_per_req']:.2f} ms, load client "
            f"{many['client_cpu_ms_per_req']:.2f} ms: {cpu:.2f} ms in all, a ceiling of {2e3 / cpu:.0f} req/s on 2 "
            f"cores. The workers' forward took {served:.2f} ms per window (median batch forward / mean batch), against "
            f"{per_window:.2f} ms for the in-process 1-thread forward at batch {near} with the other core idle: the "
            "two vCPUs slow each other down when both compute (shared core or caches; each worker also streams its "
            f"own copy of the weights). The in-process batch-32 forward with 2 threads on the same weights: "
            f"{reference:.1f} windows/s, {2e3 / reference:.2f} CPU-ms per window. Other processes used "
            f"{many['foreign_cores']:.2f} cores meanwhile."
        )
    return out


def profile_lines(profile: dict | None) -> list[str]:
    """The worker profile (`profile_lone_requests`) as one paragraph of the report."""
    if not profile:
        return []
    stages = ", ".join(f"{k} {v:.2f} ms" for k, v in profile["ms_per_request"].items())
    return [
        f"Lone request, from inside the worker (py-spy, wall clock, {profile['requests']} requests in "
        f"{profile['seconds']:.0f} s, one worker so that it sees them all): {profile['wall_ms_per_request']:.2f} "
        f"ms per request = {stages}. The waiting is the time between the worker's answer and the next request: "
        "TorchServe's front end both ways (incl. maxBatchDelay), HTTP and the client."
    ]


def defaults_rationale(results: dict) -> list[str]:
    """Why the shipped numbers, from the tuning sweep of this run."""
    shipped = results.get("default_config") or {}
    rows = []
    for cell in results.get("tuning", []):
        lv = {x["concurrency"]: x for x in cell["levels"]}
        if 1 in lv and 32 in lv:
            rows.append((cell["config"], lv[1], lv[32]))
    if not rows:
        return []

    def label(config: dict) -> str:
        return CellConfig(**config).label

    def best(pred) -> tuple | None:
        chosen = [r for r in rows if pred(r[0])]
        return max(chosen, key=lambda r: r[2]["throughput"]) if chosen else None

    ours = next((r for r in rows if all(r[0][k] == shipped[k] for k in shipped)), None)
    top = best(lambda c: True)
    one_t1 = best(lambda c: c["workers"] == 1 and c["threads"] == 1)
    one_t2 = best(lambda c: c["workers"] == 1 and c["threads"] == 2)
    out = [f"Most requests/s at c=32 in this sweep: {label(top[0])}, {top[2]['throughput']:.1f} req/s."]
    if ours:
        out.append(
            f"Shipped: {label(ours[0])}: {ours[2]['throughput']:.1f} req/s at c=32 (p99 {ours[2]['p99_ms']:.0f} ms), "
            f"lone request p50 {ours[1]['p50_ms']:.1f} ms."
        )
    for name, row in (("best 1 worker x 1 thread", one_t1), ("best 1 worker x 2 threads", one_t2)):
        if row:
            out.append(
                f"{name}: {label(row[0])}: {row[2]['throughput']:.1f} req/s at c=32, lone request p50 "
                f"{row[1]['p50_ms']:.1f} ms."
            )
    out.append(
        "maxBatchDelay is what a lone request pays on top of everything else when batchSize > 1; 1 ms is the "
        "smallest useful value (0 makes TorchServe 0.12 stop collecting after the second request: batches of <= 2)."
    )
    return out
