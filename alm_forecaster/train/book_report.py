"""The book report: the path engine on three held-out books against joint baselines, with a verdict.

checkpoint + books (book_data.BOOKS: US stocks long-only, equity/commodity long-short, a
Treasury steepener) -> book_backtest.run per book (the served path for the model's part, the
baselines in the same run) -> book_backtest.metrics -> targets met / missed / stated ->
Markdown + JSON + charts (the book's P&L fan, dependence in calm and stress, per-series
coverage by horizon). Every figure comes from the run that writes the report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.train import book_backtest, book_charts, book_text
from alm_forecaster.train.book_data import BOOKS

#: Origins every k days per book (the 20-stock book costs about 4 times a small one per origin).
EVERY = {"us_equity": 10, "equity_commodity": 5, "ust_steepener": 5}
#: Horizons of the comparison targets, of the VaR targets.
COMPARED = (1, 10, 20)
VAR_HORIZONS = (1, 10)
COVERAGE_TOLERANCE = ((60, 0.03), (250, 0.08))
NAMES = {
    "engine": "engine (served)",
    "engine_no_model": "engine without the model's marginals",
    "independent": "engine's marginals, independent paths",
    "historical": "multivariate HS",
    "filtered_hs": "multivariate FHS (EWMA)",
    "ccc_garch_t": "constant-correlation GARCH(1,1)-t",
}


def evaluate(
    forecaster: Forecaster,
    books: list[str] | None = None,
    every: dict[str, int] | None = None,
    history: int = book_backtest.HISTORY,
    paths: int = book_backtest.PATHS,
    seed: int = 0,
    progress=None,  # noqa: ANN001 - called with (book, done, total)
    daily: bool = True,
) -> dict:
    """Backtests of the named books (default: all of BOOKS) and their metrics; ``daily``: the
    1-day figures (VaR tests, the Basel light, the 1-day scores) from a second pass with an
    origin every day (1 step simulated: cheap), the other horizons from origins every k days."""
    if not forecaster.head.levels:
        raise ValueError(f"model {forecaster.name!r} forecasts no quantiles: the path engine needs a quantile model")
    spans = forecaster.loaded.metadata.get("spans", {})
    results: dict = {
        "model": forecaster.name,
        "checkpoint_sha256": forecaster.loaded.sha256,
        "spans": spans,
        "history": history,
        "paths": paths,
        "seed": seed,
        "horizons": list(book_backtest.HORIZONS),
        "books": [],
    }
    for name in books or list(BOOKS):
        start = spans.get("level_holdout_start") if name == "ust_steepener" else spans.get("holdout_start")
        book = BOOKS[name](start) if start else BOOKS[name]()
        k = (every or {}).get(name, EVERY.get(name, book_backtest.EVERY))
        report = None if progress is None else (lambda done, total, n=name: progress(n, done, total))
        bt = book_backtest.run(forecaster, book, every=k, history=history, paths=paths, seed=seed, progress=report)
        m = book_backtest.metrics(bt)
        if daily and k > 1 and 1 in bt.horizons:
            report = None if progress is None else (lambda done, total, n=name: progress(f"{n} (1 day)", done, total))
            one = book_backtest.run(forecaster, book, 1, history, paths, seed, horizons=(1,), progress=report)
            m = with_daily(m, book_backtest.metrics(one))
        results["books"].append((m, bt))
    return results


def with_daily(m: dict, d: dict) -> dict:
    """The k-day grid's metrics with the 1-day figures of the daily pass ``d``."""
    horizons = [d["horizons"][0] if e["h"] == 1 else e for e in m["horizons"]]
    daily = {k: d[k] for k in ("origins", "first", "last", "seconds", "served_difference")}
    return {**m, "horizons": horizons, "basel": d["basel"], "daily": daily}


def at(m: dict, h: int) -> dict | None:
    return next((e for e in m["horizons"] if e["h"] == h and "methods" in e), None)


def ratio(entry: dict, score: str, baseline: str) -> float:
    return entry["methods"]["engine"][score] / entry["methods"][baseline][score]


def verdict(results: dict) -> list[dict]:
    """The targets over every book: what, the figure, met / missed / stated."""
    ms = [m for m, _ in results["books"]]
    rows = []
    figures, holds = [], True
    for m in ms:
        parts = []
        for h in VAR_HORIZONS:
            e = at(m, h)
            if e is None:
                continue
            for key, label in (("var95", "95%"), ("var99", "99%")):
                v = e["methods"]["engine"][key]
                holds &= v["kupiec_p"] > 0.05
                parts.append(f"{h}d {label} {v['violations']}/{v['expected']:.1f} p={v['kupiec_p']:.3f}")
        figures.append(f"{m['book']}: " + ", ".join(parts))
    rows.append(
        {
            "target": "(1) book VaR 95% and 99% at 1 and 10 days: Kupiec p > 0.05 on every book (engine)",
            "figure": "; ".join(figures) + " (violations/expected)",
            "holds": holds,
        }
    )
    zones = {m["book"]: [w["zone"] for w in m["basel"]["methods"]["engine"]] for m in ms if "basel" in m}
    per_window = {m["book"]: m["basel"]["per_window"] for m in ms if "basel" in m}
    every_of = {m["book"]: m["basel"].get("every", m["every"]) for m in ms if "basel" in m}
    rows.append(
        {
            "target": "(2) Basel traffic light green on the 99% 1-day VaR in every 250-day window (engine)",
            "figure": "; ".join(
                f"{b} ({per_window[b]} origins a window, "
                f"{'every day' if every_of[b] == 1 else f'every {every_of[b]} days'}): "
                + " ".join(z)
                + f" ({z.count('green')}/{len(z)} green)"
                for b, z in zones.items()
            ),
            "holds": all(z == "green" for zs in zones.values() for z in zs),
        }
    )
    for score, label in (("pinball", "book P&L pinball (levels 0.01..0.99)"), ("energy", "energy score")):
        for baseline in ("historical", "ccc_garch_t"):
            rows.append(compare(ms, score, baseline, f"{label} better than {NAMES[baseline]}"))
    rows.append(compare(ms, "variogram", "independent", "variogram score better than independent paths"))
    for limit, tolerance in COVERAGE_TOLERANCE:
        rows.append(coverage_row(ms, limit, tolerance))
    rows += stated(ms)
    return rows


def compare(ms: list[dict], score: str, baseline: str, label: str) -> dict:
    """engine / baseline of a score at COMPARED horizons on every book (below 1: better), with
    the Diebold-Mariano p-value (Newey-West) of each difference."""
    figures, holds = [], True
    for m in ms:
        parts = []
        for h in COMPARED:
            e = at(m, h)
            if e is None:
                continue
            r = ratio(e, score, baseline)
            holds &= r < 1.0
            parts.append(f"{h}d {r:.3f} (p={e['vs_engine'][baseline][score]['p']:.2f})")
        figures.append(f"{m['book']}: " + ", ".join(parts))
    return {
        "target": f"({'3' if score == 'pinball' else '4' if score == 'energy' else '5'}) {label} at 1, 10 and 20 days "
        "on every book",
        "figure": "engine / baseline " + "; ".join(figures) + " (p: Diebold-Mariano, Newey-West)",
        "holds": holds,
    }


def coverage_row(ms: list[dict], limit: int, tolerance: float) -> dict:
    figures, holds = [], True
    first = limit if limit == 250 else 1
    for m in ms:
        cov = m["coverage90"]
        worst = None
        for name, values in cov["by_series"].items():
            for s, c, n, eff in zip(cov["steps"], values, cov["origins"], cov["effective"], strict=True):
                if first <= s <= limit and (worst is None or abs(c - 0.9) > abs(worst[2] - 0.9)):
                    worst = (name, s, c, n, eff)
        if worst is None:
            figures.append(f"{m['book']}: no origin with {limit} days after it")
            continue
        within = abs(worst[2] - 0.9) <= tolerance + 1e-12
        holds &= within
        off = sum(
            abs(c - 0.9) > tolerance + 1e-12
            for values in cov["by_series"].values()
            for s, c in zip(cov["steps"], values, strict=True)
            if first <= s <= limit
        )
        total = len(cov["by_series"]) * sum(first <= s <= limit for s in cov["steps"])
        figures.append(
            f"{m['book']}: worst {worst[0]} at {worst[1]}d {worst[2]:.3f} ({worst[3]} origins, "
            f"effective {worst[4]:.0f}); "
            f"{off} of {total} (series, horizon) outside"
        )
    span = f"every horizon 1..{limit} days" if limit < 250 else "250 days"
    return {
        "target": f"({'6' if limit < 250 else '7'}) per-series 90% coverage within {tolerance * 100:.0f} points "
        f"at {span}",
        "figure": "; ".join(figures),
        "holds": holds,
    }


def stated(ms: list[dict]) -> list[dict]:
    """Figures without a pass mark: the ES test, what the xLSTM adds, long horizons, dependence."""
    rows = []
    es = []
    for m in ms:
        parts = []
        for h in (1, 10):
            e = at(m, h)
            if e is not None:
                x = e["methods"]["engine"]["es975"]
                parts.append(f"{h}d Z2 {x['z2']:.2f} (p={x['p']:.2f})")
        es.append(f"{m['book']}: " + ", ".join(parts))
    rows.append(
        {"target": "(s1) ES 97.5%, Acerbi-Szekely Z2, simulated p (engine)", "figure": "; ".join(es), "holds": None}
    )
    model = []
    for m in ms:
        parts = []
        for h in COMPARED:
            e = at(m, h)
            if e is not None:
                parts.append(
                    f"{h}d pinball {ratio(e, 'pinball', 'engine_no_model'):.3f} "
                    f"energy {ratio(e, 'energy', 'engine_no_model'):.3f}"
                )
        one = at(m, 1)
        if one is not None:
            v, w = one["methods"]["engine"]["var99"], one["methods"]["engine_no_model"]["var99"]
            parts.append(
                f"1d 99% VaR violations {v['violations']} vs {w['violations']} (expected {v['expected']:.1f}; "
                f"Kupiec p {v['kupiec_p']:.3f} vs {w['kupiec_p']:.3f})"
            )
        model.append(f"{m['book']}: " + ", ".join(parts))
    rows.append(
        {
            "target": "(s2) what the xLSTM adds: engine / engine without the model's marginals (scores), and "
            "the two's 1-day 99% VaR",
            "figure": "; ".join(model),
            "holds": None,
        }
    )
    long = []
    for m in ms:
        for h in (60, 250):
            e = at(m, h)
            if e is not None:
                v = e["methods"]["engine"]
                long.append(
                    f"{m['book']} {h}d: 99% {v['var99']['violations']}/{v['var99']['expected']:.1f} "
                    f"(Kupiec p={v['var99']['kupiec_p']:.3f}), "
                    f"95% {v['var95']['violations']}/{v['var95']['expected']:.1f}"
                    f", pinball / HS {ratio(e, 'pinball', 'historical'):.3f}, effective sample {e['effective']:.1f}"
                )
    rows.append({"target": "(s3) long horizons (overlapping windows)", "figure": "; ".join(long), "holds": None})
    dep = []
    for m in ms:
        d = m.get("dependence")
        if d:
            e, r = d["methods"]["engine"], d["realised"]
            dep.append(
                f"{m['book']}: realised {r['calm']:.2f} calm -> {r['stress']:.2f} stress, engine {e['calm']:.2f} -> "
                f"{e['stress']:.2f}; worst 5% vs all: realised {d['tail']['realised']['worst']:.2f} vs "
                f"{d['tail']['realised']['all']:.2f}, engine {d['tail']['methods']['engine']['worst']:.2f} vs "
                f"{d['tail']['methods']['engine']['all']:.2f}"
            )
    rows.append(
        {"target": "(s4) average pairwise correlation in calm and stress", "figure": "; ".join(dep), "holds": None}
    )
    return rows


def write(results: dict, out: Path, stem: str, command: str, seconds: float) -> list[Path]:
    """Markdown report, JSON figures and charts; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    charts = book_charts.draw(results, out, stem)
    rows = verdict(results)
    lines = book_text.report(results, rows, command, seconds, {k: p.name for k, p in charts.items()})
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    data = out / f"{stem}.json"
    figures = {k: v for k, v in results.items() if k != "books"}
    payload = {
        **figures,
        "command": command,
        "seconds": seconds,
        "verdict": rows,
        "books": [m for m, _ in results["books"]],
    }
    data.write_text(json.dumps(clean(payload), indent=1))
    return [path, data, *charts.values()]


def clean(value):  # noqa: ANN001, ANN201
    """NaN and infinities as null (JSON has neither)."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.floating | np.integer):
        return clean(value.item())
    return value
