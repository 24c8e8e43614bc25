"""The book report's Markdown: header, method, verdict, one section per book, dependence, the
limits of the method. Every number is read from the run's results."""

from __future__ import annotations

from alm_forecaster.train import book_backtest
from alm_forecaster.train.distribution_report import verdict_word

NAMES = {
    "engine": "engine (served)",
    "engine_no_model": "engine, no model marginals",
    "independent": "engine marginals, independent",
    "historical": "multivariate HS",
    "filtered_hs": "multivariate FHS (EWMA)",
    "ccc_garch_t": "CCC GARCH(1,1)-t",
}


def days(n: int, one: str = "1 day") -> str:
    """``n`` days in words: "1 day" (or ``one``: "day" after "every"), "10 days"."""
    return one if n == 1 else f"{n} days"


def report(results: dict, rows: list[dict], command: str, seconds: float, charts: dict[str, str]) -> list[str]:
    lines = header(results, command, seconds)
    lines += ["## Verdict", "", "| target | figure | verdict |", "|---|---|---|"]
    lines += [f"| {r['target']} | {r['figure']} | {verdict_word(r)} |" for r in rows]
    lines += ["", *findings(results, rows), ""]
    if "fan" in charts:
        lines += [f"![the book's P&L fan charts]({charts['fan']})", ""]
    for m, _ in results["books"]:
        lines += section(m)
    lines += dependence_section(results, charts.get("dependence"))
    lines += ["## Per-series coverage by horizon", "", f"![engine per-series 90% coverage]({charts['coverage']})", ""]
    lines += shortfalls(results)
    return lines


def header(results: dict, command: str, seconds: float) -> list[str]:
    spans = results["spans"]
    lines = [
        f"# Book report: {results['model']}'s path engine on three held-out books",
        "",
        f"Produced by `{command}` in {seconds / 60:.1f} minutes on this machine; every figure below comes from that "
        "one run.",
        "",
        f"- Checkpoint sha256: `{results['checkpoint_sha256']}`.",
        f"- Spans (the checkpoint's metadata): prices fit before {spans.get('validation_start')}, calibrated "
        f"{spans.get('calibration_start')} .. {spans.get('holdout_start')}, "
        f"held out from {spans.get('holdout_start')}; "
        f"levels calibrated {spans.get('level_calibration_start')} .. {spans.get('level_holdout_start')}, held out "
        f"from {spans.get('level_holdout_start')}.",
        f"- Per origin: the last {results['history']} rows of the book (the request's history), {results['paths']} "
        f"paths, seed {results['seed']} + the origin's row; horizons {', '.join(map(str, results['horizons']))} "
        "trading days.",
        "",
        "| book | what | series | held out (origins every k days) | k | 1-day origins | data |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, _ in results["books"]:
        daily = f"{m['daily']['origins']} ({m['daily']['first']} .. {m['daily']['last']})" if "daily" in m else "-"
        sources = "; ".join(
            f"{s.get('series', '') + ': ' if 'series' in s else ''}{s.get('source')} "
            f"({s.get('first_date', '')} .. {s.get('last_date', '')}, sha256 {s['sha256'][:12]})"
            for s in m["sources"]
        )
        lines.append(
            f"| {m['book']} | {m['description']} | {len(m['series'])} ({', '.join(sorted(set(m['kinds'])))}) | "
            f"{m['first']} .. {m['last']} ({m['origins']}; data to {m['data_end']}) | {m['every']} | {daily} | "
            f"{sources} |"
        )
    served = max(
        max(m["served_difference"], m.get("daily", {}).get("served_difference", 0.0)) for m, _ in results["books"]
    )
    lines += [
        "",
        "## How it was measured",
        "",
        "At each origin the book goes to `Forecaster.predict` as a KServe ForecastRequest with "
        "`options.scenarios` (the served path: the xLSTM's quantiles of every series at all its steps and "
        "levels). The answer's `Forecast` and the request's panel go to `scenarios.simulate` with the same "
        "seed and `return_paths`, up to 250 days (or the data's end), at origins every k days; the 1-day "
        "figures (VaR tests, the Basel light, 1-day scores) come from a second pass with an origin every day "
        "(one step simulated), as a bank backtests its 1-day VaR. The served answer's 1-day book "
        "quantiles (levels 0.01..0.99) equal those of the scored paths at every origin to the engine's float32 "
        f"rounding (largest difference {served:.1e} of the P&L's 1%-99% range). A price's change is its simple "
        "return, a level's its difference; the book's P&L is "
        "sum of exposure x change. Methods on the same origins and history:",
        "",
        "- **engine (served)**: the path engine with the xLSTM's calibrated marginals at steps 1-5;",
        "- **engine, no model marginals**: the same engine with `Settings.model_marginals=False` (the ablation);",
        "- **engine marginals, independent**: the engine's paths with each series' paths shuffled on their own "
        "(every series keeps exactly its paths; no pairing between series survives): dependence removed;",
        "- **multivariate HS**: every same-date vector of h-day changes in the history (overlapping);",
        "- **multivariate FHS (EWMA)**: same-date residual vectors (EWMA lambda 0.94) bootstrapped day by day, "
        "scaled by today's volatility held flat;",
        "- **CCC GARCH(1,1)-t**: `arch`'s GARCH(1,1)-t per series (refitted every "
        f"{book_backtest.GARCH_REFIT} trading days), the correlation of the standardised residuals, "
        "multivariate-t innovations (one degree of freedom: the median of the series').",
        "",
        "Scores: VaR violations (a loss beyond the VaR) with Kupiec's and Christoffersen's tests; the "
        "Basel traffic light on the 99% 1-day VaR in consecutive 250-trading-day windows (250 "
        "origins each with the daily pass, 250 / k without it; Basel's binomial cut-offs: green below a "
        "cumulative probability of 95%, red "
        "from 99.99%, for that number of observations); Acerbi and Szekely's Z2 for the 97.5% ES, its "
        "p-value simulated by drawing each origin's P&L from that method's own forecast; the pinball loss "
        "of the book's P&L averaged over levels 0.01..0.99; the energy score (`scoringrules`, fair "
        "estimator, a systematic subsample of 300 members) and the variogram score (order 0.5, every "
        "member) of the vector of P&L contributions (exposure x change of each series). Losses are in the "
        "exposures' currency. Diebold-Mariano p-values use Newey-West variances with ceil(h/k) - 1 lags. "
        "At h days with origins every k days the outcomes overlap when h > k: the **effective sample** is "
        "origins x min(1, k/h), the number of non-overlapping windows.",
        "",
    ]
    return lines


def findings(results: dict, rows: list[dict]) -> list[str]:
    met = sum(r["holds"] is True for r in rows)
    scored = sum(r["holds"] is not None for r in rows)
    missed = [r["target"] for r in rows if r["holds"] is False]
    return [f"{met} of {scored} targets met." + (" Missed: " + "; ".join(missed) + "." if missed else "")]


def section(m: dict) -> list[str]:
    lines = [f"## {m['book']}", "", f"{m['description']}. {m['origins']} origins {m['first']} .. {m['last']}.", ""]
    for e in m["horizons"]:
        if "methods" not in e:
            lines += [f"{days(e['h'])}: no origin with {days(e['h'])} after it.", ""]
            continue
        lines += [
            f"**{days(e['h'])}**: {e['origins']} origins every {days(e.get('every', m['every']), 'day')} "
            f"(to {e['last']}), "
            f"effective sample {e['effective']:.1f}.",
            "",
            "| method | VaR95 viol / exp (Kupiec p, Christoffersen p) | VaR99 viol / exp (Kupiec p) | ES97.5 Z2 (p) "
            "| pinball (/ engine's, DM p) | energy (/ engine's, DM p) | variogram (/ engine's, DM p) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, x in e["methods"].items():
            v95, v99, es = x["var95"], x["var99"], x["es975"]

            def cell(score: str, name: str = name, x: dict = x, e: dict = e) -> str:
                if name == "engine":
                    return f"{x[score]:.4g}"
                dm = e["vs_engine"][name][score]
                return f"{x[score]:.4g} ({e['methods']['engine'][score] / x[score]:.3f}, {dm['p']:.2f})"

            lines.append(
                f"| {NAMES[name]} | {v95['violations']} / {v95['expected']:.1f} ({v95['kupiec_p']:.3f}, "
                f"{v95['christoffersen_p']:.3f}) | {v99['violations']} / {v99['expected']:.1f} "
                f"({v99['kupiec_p']:.3f}) | "
                f"{es['z2']:.2f} ({es['p']:.2f}) | {cell('pinball')} | {cell('energy')} | {cell('variogram')} |"
            )
        lines.append("")
    if "basel" in m:
        lines += [
            f"Basel traffic light, 99% 1-day VaR, windows of {m['basel']['per_window']} origins "
            f"(250 trading days, origins every {days(m['basel'].get('every', m['every']), 'day')}):",
            "",
            "| method | "
            + " | ".join(f"{w['from'][:10]} .. {w['to'][:10]}" for w in m["basel"]["methods"]["engine"])
            + " |",
            "|---|" + "---|" * len(m["basel"]["methods"]["engine"]),
        ]
        for name, windows in m["basel"]["methods"].items():
            lines.append(
                f"| {NAMES[name]} | " + " | ".join(f"{w['zone']} ({w['exceptions']}/{w['n']})" for w in windows) + " |"
            )
        lines.append("")
    return lines


def dependence_section(results: dict, chart: str | None) -> list[str]:
    lines = [
        "## Dependence in calm and stress",
        "",
        "Realised: the average pairwise correlation of the daily changes over the 20 days after each origin; "
        "origins split by the book's realised volatility over those days (stress: its top quartile; calm: below "
        "its median). Each method: the average pairwise correlation of its 1-day draws at the same origins. "
        "Joint tail: over the held-out days, the correlation of the daily changes standardised by their EWMA "
        "volatility, all days vs the days of the book's worst 5% P&L; each method: its 1-day draws, all vs its "
        "worst 5% book outcomes, averaged over origins.",
        "",
        "| book | regime | origins | realised | " + " | ".join(NAMES[m] for m in book_backtest.METHODS) + " |",
        "|---|---|---|---|" + "---|" * len(book_backtest.METHODS),
    ]
    for m, _ in results["books"]:
        d = m.get("dependence")
        if not d:
            continue
        for regime in ("calm", "stress"):
            lines.append(
                f"| {m['book']} | {regime} | {d['origins'][regime]} | {d['realised'][regime]:.3f} | "
                + " | ".join(f"{d['methods'][x][regime]:.3f}" for x in book_backtest.METHODS)
                + " |"
            )
        for part in ("all", "worst"):
            t = d["tail"]
            lines.append(
                f"| {m['book']} | {'all days' if part == 'all' else 'worst 5%'} | {t['days']} days | "
                f"{t['realised'][part]:.3f} | "
                + " | ".join(f"{t['methods'][x][part]:.3f}" for x in book_backtest.METHODS)
                + " |"
            )
    lines.append("")
    rises = []
    for m, _ in results["books"]:
        d = m.get("dependence")
        if d:
            real = d["realised"]["stress"] - d["realised"]["calm"]
            eng = d["methods"]["engine"]["stress"] - d["methods"]["engine"]["calm"]
            rises.append(f"{m['book']}: realised {real:+.3f}, engine {eng:+.3f}")
    lines += [
        "From calm to stress the average pairwise correlation moves by " + "; ".join(rises) + ". The engine's 1-day "
        "dependence is that of the history it bootstraps, whatever today's regime: it can only rise with stress "
        "through the mapping onto the model's marginals (rank-preserving: it keeps the dependence) or through the "
        "history holding a crisis.",
        "",
    ]
    if chart:
        lines += [f"![dependence in calm and stress]({chart})", ""]
    return lines


def shortfalls(results: dict) -> list[str]:
    lines = ["## Where the method falls short", ""]
    ms = [m for m, _ in results["books"]]
    for m in ms:
        long = [e for e in m["horizons"] if e["h"] >= 60 and "methods" in e]
        if long:
            lines.append(
                f"- {m['book']}: the long horizons rest on few independent outcomes: "
                + ", ".join(
                    f"{e['h']} days {e['origins']} origins, effective sample {e['effective']:.1f}" for e in long
                )
                + "; their tests are shown, not trusted."
            )
    lines += measured(results)
    lines += [
        "- The model's marginals cover steps 1-5 only; beyond them every path carries its step-5 mapping and adds "
        "the engine's own increments (bootstrapped residuals, GARCH(1,1) with fixed alpha 0.05, beta 0.94), so at "
        "10-250 days the forecast is the engine's, not the network's.",
        "- The dependence at every horizon is the bootstrapped history's (same-date residual vectors): a regime "
        "change in correlation that the history has not seen is not forecast.",
        "- From 10 days on the origins are every k days: a 99% VaR at 10 days expects about 2 violations per "
        "book, so Kupiec's test there has little power; overlapping windows at 20 days and beyond make it "
        "optimistic as well (it assumes independent outcomes).",
        "",
    ]
    return lines


def measured(results: dict) -> list[str]:
    """Shortfalls read from the run: what the network adds, coverage off target, dependence."""
    from alm_forecaster.train.book_report import COMPARED, at, ratio

    ms = [m for m, _ in results["books"]]
    lines = []
    ablation = [
        ratio(e, score, "engine_no_model")
        for m in ms
        for h in COMPARED
        if (e := at(m, h))
        for score in ("pinball", "energy")
    ]
    garch = [
        ratio(e, score, "ccc_garch_t")
        for m in ms
        for h in COMPARED
        if (e := at(m, h))
        for score in ("pinball", "energy")
    ]
    if ablation:
        lines.append(
            f"- The xLSTM adds little to a book: the engine's pinball and energy scores over the same engine without "
            f"the model's marginals range {min(ablation):.3f} .. {max(ablation):.3f} at 1-20 days on every book "
            f"(below 1: the model helps); against constant-correlation GARCH(1,1)-t they range {min(garch):.3f} .. "
            f"{max(garch):.3f}. The engine's skill over historical simulation is its volatility filter and "
            "bootstrap, as for a single series."
        )
    for m in ms:
        cov = m["coverage90"]
        over, under = {}, {}
        for name, values in cov["by_series"].items():
            for s, c in zip(cov["steps"], values, strict=True):
                if s <= 60 and c > 0.93:
                    over.setdefault(name, []).append(s)
                if s <= 60 and c < 0.87:
                    under.setdefault(name, []).append(s)
        if over or under:

            def listed(d: dict) -> str:
                return ", ".join(f"{n} ({len(v)} horizon(s) from {min(v)} days)" for n, v in d.items()) or "none"

            lines.append(
                f"- {m['book']}: the engine's 90% intervals over-cover (above 93%) on {listed(over)} and under-cover "
                f"(below 87%) on {listed(under)}, of horizons 1-60."
            )
        d = m.get("dependence")
        if d:
            real = d["realised"]["stress"] - d["realised"]["calm"]
            eng = d["methods"]["engine"]["stress"] - d["methods"]["engine"]["calm"]
            if real > eng + 0.05:
                lines.append(
                    f"- {m['book']}: realised correlation rose by {real:+.2f} from calm to stress, the engine's by "
                    f"{eng:+.2f}: its dependence does not follow the regime."
                )
    return lines
