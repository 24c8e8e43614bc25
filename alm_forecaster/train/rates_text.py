"""The rates report's text and charts: the results of `rates_report.evaluate` as Markdown, JSON
and pictures (the verdict table, a section per series, the level split, fan and coverage charts).

    results (rates_report.evaluate) -> verdict rows (rates_report.verdict)
    -> Markdown: header (command, checkpoint, spans, data), verdict table, summary, per-series
       sections, level dependence -> JSON of every figure -> fan and coverage charts
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from alm_forecaster.train import backtest
from alm_forecaster.train.distribution_report import step_table, var_table, verdict_word
from alm_forecaster.train.rates_report import (
    COVERAGE_TOLERANCE,
    FAN_SERIES,
    NOMINAL,
    SHIFT,
    level_finding,
    verdict,
)


def write(results: dict, out: Path, stem: str, command: str) -> list[Path]:
    """Markdown report, JSON figures and charts; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    names = [m["series"] for m, _ in results["series"]]
    fans = [n for n in FAN_SERIES if n in names] or sorted({names[0], names[-1]}, key=names.index)
    fan_files = {}
    for m, bt in results["series"]:
        if m["series"] in fans:
            path = out / f"{stem}_{m['series'].replace(':', '_').replace('/', '_')}_fan.png"
            backtest.fan_chart(bt, path)
            fan_files[m["series"]] = path.name
            written.append(path)
    coverage = out / f"{stem}_coverage.png"
    coverage_chart([m for m, _ in results["series"]], coverage)
    written.append(coverage)
    rows = verdict(results)
    lines = header(results, command) + summary(results, rows)
    for m, _ in results["series"]:
        lines += section(m, results["unit"], fan_files.get(m["series"]))
    lines += level_section(results)
    lines += ["", f"![90% and 50% coverage by step, every series]({coverage.name})", ""]
    path = out / f"{stem}.md"
    path.write_text("\n".join(lines) + "\n")
    data = out / f"{stem}.json"
    figures = {k: v for k, v in results.items() if k != "series"}
    data.write_text(
        json.dumps(
            {**figures, "command": command, "verdict": rows, "series": [m for m, _ in results["series"]]}, indent=1
        )
    )
    return [path, data, *written]


def header(results: dict, command: str) -> list[str]:
    spans = results["spans"]
    ms = [m for m, _ in results["series"]]
    end = max(m["last"] for m in ms)
    lines = [
        f"# Rates report: {results['model']} on level series",
        "",
        f"Produced by `{command}`; every figure below comes from that one run.",
        "",
        f"- Checkpoint sha256: `{results['checkpoint_sha256']}`.",
    ]
    if spans:
        lines.append(
            f"- Level spans (the checkpoint's metadata): fit before {spans.get('validation_start')}, validation "
            f"(early stopping) {spans.get('validation_start')} .. {spans.get('calibration_start')}, calibration "
            f"{spans.get('calibration_start')} .. {spans.get('holdout_start')}, held out from "
            f"{spans.get('holdout_start')} to the data's end."
        )
    lines += [
        f"- Held-out origins: from {results['holdout_start']} (last origin {end}, the last with 5 days after it)"
        + (f", one every {results['every']} days" if results["every"] > 1 else ", every day")
        + ".",
        "- Data: "
        + "; ".join(
            f"{m['series']} ({m['data'].get('source')}, {m['data'].get('rows')} rows "
            f"{m['data'].get('first_date')} .. {m['data'].get('last_date')}, sha256 {m['data']['sha256'][:12]}, "
            + ("in the model's training series" if m["trained"] else "never used in training")
            + ")"
            for m in ms
        )
        + ".",
        "",
        "Changes are differences in the series' own units (percentage points for a yield in percent). "
        f"Pinball losses, Winkler scores and MAE are in **{results['unit']}**: basis points of the yield "
        "(1 bp = 0.01 percentage point).",
        "",
        "## How it was measured",
        "",
        'Each origin\'s last rows go to `Forecaster.predict` as `Request(csv, kind="level")`, the code '
        "path of a request with the header `X-Series-Kind: level`; the model's quantiles are the "
        "served values minus the anchor. Baselines on the same changes and origins: historical "
        "simulation (quantiles of the last 250 overlapping h-day changes), filtered historical "
        "simulation on the model's own EWMA volatility (the last 1,000 h-day changes standardised by "
        "it: the model without anything learned beyond that scale) and GARCH(1,1) with Student-t "
        "innovations (`arch`, refit every 20 origins on the last 1,000 daily changes). The 5% VaR at "
        "step 1 is backtested with Kupiec's and Christoffersen's tests.",
        "",
        f"Negative rates: every series shifted down by {results['shift']:g} (so a yield of 0.05% becomes "
        f"-2.95%) goes through the same path again; model, HS and FHS are compared (GARCH is left out: "
        f"an optimiser, and the slow one). Level dependence: from {results['split_start']} on, origins "
        f"are split by the level at the origin (below {results['low_level']:g} vs at or above); origins "
        f"before {results['holdout_start']} lie in the validation and calibration spans, so that split "
        "is not out of sample, and it mixes level with regime (2006-2008 was a crisis).",
        "",
    ]
    return lines


def summary(results: dict, rows: list[dict]) -> list[str]:
    lines = ["## Verdict", "", "| target | figure | verdict |", "|---|---|---|"]
    lines += [f"| {r['target']} | {r['figure']} | {verdict_word(r)} |" for r in rows]
    lines += [
        "",
        "By series (held out; ratios are the model's mean pinball loss over the baseline's, steps 1-5):",
        "",
        "| series | 90% coverage, steps 1-5 | 50% coverage, steps 1-5 | / HS | / FHS | / GARCH-t | shift |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, _ in results["series"]:
        t = m["targets"]

        def fmt(key: str, t: dict = t) -> str:
            return " ".join(f"{r:.3f}" for r in t[key]["ratios"]) if t[key]["ratios"] else "-"

        lines.append(
            f"| {m['series']} | {t['coverage90']['figure']} **{verdict_word(t['coverage90'])}** | "
            f"{t['coverage50']['figure']} **{verdict_word(t['coverage50'])}** | {fmt('pinball_vs_hs')} "
            f"**{verdict_word(t['pinball_vs_hs'])}** | {fmt('pinball_vs_fhs')} | {fmt('pinball_vs_garch')} | "
            f"{verdict_word(t['shift'])} |"
        )
    lines += ["", *network_sentence(results), ""]
    return lines


def network_sentence(results: dict) -> list[str]:
    """(c): where the network beats its own volatility scale (FHS) and GARCH-t, and where not."""
    out = []
    for key, name in (("pinball_vs_fhs", "filtered HS on its own EWMA volatility"), ("pinball_vs_garch", "GARCH-t")):
        better, level, worse = [], [], []
        for m, _ in results["series"]:
            r = m["targets"][key]["ratios"]
            if not r:
                continue
            mean = float(np.mean(r))
            (better if mean < 0.99 else worse if mean > 1.01 else level).append(f"{m['series']} ({mean:.3f})")
        if better or level or worse:
            out.append(
                f"Against {name} (mean ratio over steps; below 0.99: the model is better, above 1.01: worse): "
                f"better on {', '.join(better) or 'none'}; within 1% on {', '.join(level) or 'none'}; worse on "
                f"{', '.join(worse) or 'none'}."
            )
    out.append(
        "Where the model is within 1% of filtered HS, its skill is the EWMA volatility scaling and the "
        "calibration, not the network."
    )
    return [" ".join(out)]


def section(m: dict, unit: str, fan: str | None) -> list[str]:
    role = "a training series, its held-out span" if m["trained"] else "never used in training"
    lo, hi = m["holdout_levels"]
    lines = [
        f"## {m['series']} ({role})",
        "",
        f"{m['origins']} origins, {m['first']} .. {m['last']}; the level ranged {lo:.2f} .. {hi:.2f} over the span.",
        "",
    ]
    methods = list(m["methods"])
    lines += step_table(m, methods, "cov90 / cov50", lambda s: f"{s['coverage90']:.3f} / {s['coverage50']:.3f}")
    lines += ["", f"Mean pinball loss and Winkler score of the 90% interval ({unit}; lower is better):", ""]
    lines += step_table(
        m, methods, "pinball / winkler90", lambda s: f"{s['pinball_mean_bp']:.3f} / {s['winkler90_bp']:.2f}"
    )
    lines += var_table(m, methods, "5% VaR at step 1 (a violation: the next day's change below the 5% quantile):")
    shift = m["shift_check"]
    lines += [
        "",
        f"Point MAE ({unit}) by step: "
        + "; ".join(f"{x} " + ", ".join(f"{v:.2f}" for v in values) for x, values in m["point_mae_bp"].items())
        + ".",
        "",
        f"Shifted down by {SHIFT:g} (values {shift['values'][0]:.2f} .. {shift['values'][1]:.2f}), largest "
        "differences in coverage and pinball: "
        + "; ".join(f"{x} {d['coverage']:.1e} / {d['pinball_bp']:.1e} bp" for x, d in shift["methods"].items())
        + f"; the model's quantiles {shift['max_quantile_difference']:.1e}.",
        "",
    ]
    if fan:
        lines += [f"![{m['series']} fan chart]({fan})", ""]
    return lines


def level_section(results: dict) -> list[str]:
    low = results["low_level"]
    lines = [
        f"## Level dependence: origins below {low:g} vs at or above",
        "",
        "Rates' volatility collapses near zero and a rate cannot fall far below it. Every feature is a "
        "difference scaled by the EWMA volatility, so the model sees the level only through that "
        "volatility. Per series, span and side: origins, the model's 90% and 50% coverage and its tail "
        "rates (below the 5% / above the 95% quantile; 0.05 each when calibrated), the mean absolute "
        f"change and mean pinball loss ({results['unit']}) of model, HS and FHS, at steps 1 and 5.",
        "",
        "| series | span | level | origins | step | cov90 | cov50 | below q05 / above q95 | mean abs change "
        "| pinball model / HS / FHS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, _ in results["series"]:
        for e in m["level_split"]:
            if not e["origins"]:
                lines.append(f"| {m['series']} | {e['span']} | {e['side']} | 0 | | | | | | |")
                continue
            for s in (e["steps"][0], e["steps"][-1]):
                p = s["pinball_mean_bp"]
                lines.append(
                    f"| {m['series']} | {e['span']} | {e['side']} | {e['origins']} | {s['step']} | "
                    f"{s['coverage90']:.3f} | {s['coverage50']:.3f} | {s['below_q05']:.3f} / {s['above_q95']:.3f} | "
                    f"{s['mean_abs_change_bp']:.2f} | {p['model']:.3f} / {p['historical_simulation']:.3f} / "
                    f"{p['filtered_hs_ewma']:.3f} |"
                )
    summary, by_series = level_finding(results)
    lines += ["", f"Finding, {summary}. By series:", "", *by_series, ""]
    return lines


def coverage_chart(ms: list[dict], path: Path) -> None:
    """The model's 90% and 50% coverage by step, one line per series, nominal and target bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key in zip(axes, ("coverage90", "coverage50"), strict=True):
        nominal, tolerance = NOMINAL[key], COVERAGE_TOLERANCE[key]
        ax.axhspan(nominal - tolerance, nominal + tolerance, color="0.9", label="target band")
        ax.axhline(nominal, color="black", lw=0.8, ls="--")
        for m in ms:
            steps = m["methods"]["model"]["steps"]
            ax.plot([s["step"] for s in steps], [s[key] for s in steps], marker="o", label=m["series"])
        ax.set_xticks(range(1, len(ms[0]["methods"]["model"]["steps"]) + 1))
        ax.set_title(f"model's {key[-2:]}% interval coverage by step (held out)")
        ax.set_xlabel("step (trading days ahead)")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
