"""The distribution report of a quantile model: backtests on held-out spans, targets, verdict.

checkpoint + series (training series: their held-out span; unseen series: the same span)
-> backtest.run per series (the served code path, baselines in the same run)
-> metrics per series -> targets checked -> Markdown + JSON + fan and coverage charts
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.train import backtest

#: What the model must reach on held-out data (the issue's figures).
COVERAGE_TOLERANCE = {"trained": 0.03, "unseen": 0.05}
POINT_MAE_TOLERANCE = 0.02


def evaluate(
    forecaster: Forecaster, series: list[tuple[str, str, np.ndarray, np.ndarray]], start: str, every: int = 1
) -> dict:
    """``series``: (name, "trained" | "unseen", dates, prices); origins from ``start`` on, one
    every ``every`` days."""
    results = {
        "model": forecaster.name,
        "checkpoint_sha256": forecaster.loaded.sha256,
        "holdout_start": start,
        "series": [],
    }
    for name, role, dates, prices in series:
        first = int(np.searchsorted(dates, np.datetime64(start)))
        bt = backtest.run(forecaster, name, dates, prices, start=first, every=every)
        m = backtest.metrics(bt)
        m["role"] = role
        m["targets"] = targets(m, role)
        results["series"].append((m, bt))
    return results


def targets(m: dict, role: str) -> list[dict]:
    """Each target: what, the figure, whether it holds."""
    model = m["methods"]["model"]
    out = []
    tolerance = COVERAGE_TOLERANCE[role]
    worst = max(abs(s["coverage90"] - 0.90) for s in model["steps"])
    out.append(
        {
            "target": f"90% coverage within {tolerance * 100:.0f} points at every step",
            "figure": f"worst step {worst * 100:.1f} points off",
            "holds": worst <= tolerance,
        }
    )
    hs = m["methods"].get("historical_simulation")
    if hs:
        ratios = [a["pinball_mean_bp"] / b["pinball_mean_bp"] for a, b in zip(model["steps"], hs["steps"], strict=True)]
        out.append(
            {
                "target": "mean pinball loss no worse than historical simulation at every step",
                "figure": "ratio by step " + ", ".join(f"{r:.3f}" for r in ratios),
                "holds": max(ratios) <= 1.0,
            }
        )
    garch = m["methods"].get("garch11_t")
    if garch:
        ratios = [
            a["pinball_mean_bp"] / b["pinball_mean_bp"] for a, b in zip(model["steps"], garch["steps"], strict=True)
        ]
        out.append(
            {
                "target": "mean pinball loss vs GARCH(1,1)-t (stated; the aim is to beat it)",
                "figure": "ratio by step "
                + ", ".join(f"{r:.3f}" for r in ratios)
                + f"; beaten at steps {', '.join(str(h + 1) for h, r in enumerate(ratios) if r < 1.0) or 'none'}",
                "holds": None,
            }
        )
    mae = m["point_mae_bp"]
    ratios = [a / b for a, b in zip(mae["model"], mae["persistence"], strict=True)]
    out.append(
        {
            "target": "point MAE within 2% of persistence or better",
            "figure": "ratio by step " + ", ".join(f"{r:.4f}" for r in ratios),
            "holds": max(ratios) <= 1 + POINT_MAE_TOLERANCE,
        }
    )
    return out


def write(results: dict, out: Path, stem: str, command: str) -> list[Path]:
    """Markdown report, JSON figures and charts; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    lines = [
        f"# Distribution report: {results['model']}",
        "",
        f"Produced by `{command}` (checkpoint sha256 {results['checkpoint_sha256'][:12]}). Held-out origins "
        f"from {results['holdout_start']}; every figure below comes from that one run.",
        "",
        *METHOD,
        *summary(results),
    ]
    figures = []
    for m, bt in results["series"]:
        name = m["series"].replace(":", "_")
        fan, cov = out / f"{stem}_{name}_fan.png", out / f"{stem}_{name}_coverage.png"
        backtest.fan_chart(bt, fan)
        backtest.coverage_chart(m, cov)
        written += [fan, cov]
        lines += section(m, fan.name, cov.name)
        figures.append(m)
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    data = out / f"{stem}.json"
    data.write_text(json.dumps({**{k: v for k, v in results.items() if k != "series"}, "series": figures}, indent=1))
    return [path, data, *written]


METHOD = [
    "## How the quantiles are made",
    "",
    "One price a day -> 19 scale-free features (standardised returns and their sizes, volatility "
    "ratios, standardised 5/20/60-day returns, distance to the 60-day high and low; "
    "`alm_forecaster/close_features.py`) over a 20-day window -> an xLSTM (hidden 32, blocks sLSTM + "
    "mLSTM) whose head gives, per step, a median and cumulative softplus steps above and below it: "
    "standardised quantiles that cannot cross. They are scaled by the window's EWMA volatility "
    "(lambda 0.94) times sqrt(h). Trained with the pinball loss on the S&P 500 and WTI before 2010 "
    "(early stopping on 2010-2011), then recalibrated level by level on 2012-2014: each level is "
    "shifted by the quantile of its errors there, so that its coverage on that span is nominal "
    "(`alm_forecaster/train/quantile_training.py`). The same network also learns from the eleven "
    "US Treasury par-yield tenors as level series (differences in percentage points; before 2005, "
    "calibrated on their own on 2007-2010: docs/rates-report.md); prices are calibrated on prices "
    "only. Nothing from the held-out start on is read in training or calibration.",
    "",
    "Baselines, computed in the same run from the same prices: persistence (point), historical "
    "simulation (quantiles of the last 250 overlapping h-day returns), filtered historical "
    "simulation on the model's own EWMA volatility (the last 1,000 h-day returns standardised by "
    "it: what the model is without anything learned beyond that scale) and GARCH(1,1) with "
    "Student-t innovations (`arch`, refit every 20 days on the last 1,000 returns; the h-day "
    "quantile from the summed variance forecasts).",
    "",
]


def summary(results: dict) -> list[str]:
    """The verdict: every target, per series, and what the network adds over its own scale."""
    lines = ["## Verdict", "", "| series | target | figure | verdict |", "|---|---|---|---|"]
    for m, _ in results["series"]:
        for t in m["targets"]:
            lines.append(f"| {m['series']} ({m['role']}) | {t['target']} | {t['figure']} | {verdict_word(t)} |")
    lines += [
        "",
        "Mean pinball loss of the model relative to filtered historical simulation on the same "
        "EWMA volatility, by step (below 1: the network adds something):",
        "",
    ]
    spread: list[float] = []
    for m, _ in results["series"]:
        fhs = m["methods"].get("filtered_hs_ewma")
        if fhs:
            ratios = [
                a["pinball_mean_bp"] / b["pinball_mean_bp"]
                for a, b in zip(m["methods"]["model"]["steps"], fhs["steps"], strict=True)
            ]
            lines.append(f"- {m['series']}: " + ", ".join(f"{r:.3f}" for r in ratios))
            spread.extend(ratios)
    if spread:
        lines += [
            "",
            f"Across series and steps that ratio lies between {min(spread):.3f} and {max(spread):.3f}: the "
            "calibrated distribution's advantage over historical simulation comes from scaling by the "
            "EWMA volatility; the network itself adds "
            + ("nothing measurable beyond it." if max(abs(r - 1) for r in spread) < 0.01 else "a measurable amount."),
        ]
    lines += [""]
    return lines


def verdict_word(target: dict) -> str:
    """met / missed, or stated for a figure without a pass mark."""
    return "stated" if target["holds"] is None else "met" if target["holds"] else "missed"


def step_table(m: dict, methods: list[str], what: str, cell) -> list[str]:
    """A Markdown table: one row per step, one column per method, ``cell(step metrics)`` each."""
    lines = ["| step | " + " | ".join(f"{x} {what}" for x in methods) + " |", "|---|" + "---|" * len(methods)]
    for h in range(len(m["methods"]["model"]["steps"])):
        lines.append(f"| {h + 1} | " + " | ".join(cell(m["methods"][x]["steps"][h]) for x in methods) + " |")
    return lines


def var_table(m: dict, methods: list[str], title: str) -> list[str]:
    """The 5% VaR backtest at step 1 of each method: violations, Kupiec, Christoffersen, Basel zone."""
    lines = [
        "",
        title,
        "",
        "| method | violations (rate) | Kupiec p | Christoffersen p | Basel zone, last 250 days |",
        "|---|---|---|---|---|",
    ]
    for x in methods:
        v = m["methods"][x]["var5_step1"]
        lines.append(
            f"| {x} | {v['violations']} ({v['rate']:.3f}) | {v['kupiec_p']:.3f} | "
            f"{v['christoffersen_p']:.3f} | {v['basel_zone_last250']} ({v['exceptions_last250']}) |"
        )
    return lines


def section(m: dict, fan: str, cov: str) -> list[str]:
    role = "a series used in training, its held-out span" if m["role"] == "trained" else "never used in training"
    lines = [f"## {m['series']} ({role})", "", f"{m['origins']} origins, {m['first']} .. {m['last']}.", ""]
    methods = list(m["methods"])
    lines += step_table(m, methods, "cov90 / cov50", lambda s: f"{s['coverage90']:.3f} / {s['coverage50']:.3f}")
    lines += [
        "",
        "Mean pinball loss (basis points of log return; lower is better) and Winkler score of the 90% interval:",
        "",
    ]
    lines += step_table(
        m, methods, "pinball / winkler90", lambda s: f"{s['pinball_mean_bp']:.2f} / {s['winkler90_bp']:.0f}"
    )
    lines += [
        "",
        "Pinball loss per level at step 1 (bp):",
        "",
        "| method | " + " | ".join(m["levels"] and [f"{lv:g}" for lv in m["levels"]]) + " |",
        "|---|" + "---|" * len(m["levels"]),
    ]
    for x in methods:
        lines.append(
            f"| {x} | " + " | ".join(f"{v:.2f}" for v in m["methods"][x]["steps"][0]["pinball_bp"].values()) + " |"
        )
    lines += var_table(m, methods, "5% VaR backtest at step 1 (violations = next day's return below the 5% quantile):")
    lines += [
        "",
        "Point forecast MAE (bp of price) by step: "
        + "; ".join(f"{x} " + ", ".join(f"{v:.1f}" for v in values) for x, values in m["point_mae_bp"].items()),
        "",
    ]
    lines += ["Targets:", ""] + [f"- {t['target']}: {t['figure']} -> **{verdict_word(t)}**" for t in m["targets"]]
    lines += ["", f"![fan chart]({fan})", "", f"![coverage by step]({cov})", ""]
    return lines
