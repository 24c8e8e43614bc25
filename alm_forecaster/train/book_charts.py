"""The book report's charts: the book's P&L fan, dependence in calm and stress, per-series
coverage of the engine's 90% intervals by horizon."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alm_forecaster.train import book_backtest, book_baselines
from alm_forecaster.train import book_scoring as scoring

SHOWN = ("engine", "historical", "filtered_hs", "ccc_garch_t", "independent")


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw(results: dict, out: Path, stem: str) -> dict[str, Path]:
    """Every chart of the report; {what: path}."""
    charts = {"fan": out / f"{stem}_fan.png", "coverage": out / f"{stem}_coverage.png"}
    fan(results["books"], charts["fan"])
    coverage(results["books"], charts["coverage"])
    if any("dependence" in m for m, _ in results["books"]):
        charts["dependence"] = out / f"{stem}_dependence.png"
        dependence([m for m, _ in results["books"] if "dependence" in m], charts["dependence"])
    return charts


def fan(books: list, path: Path, h: int = 10) -> None:
    """Per book: the engine's h-day P&L bands at every origin against the realised P&L; and
    one origin's fan over 1..250 days against the P&L that followed."""
    plt = _plt()
    fig, axes = plt.subplots(len(books), 2, figsize=(13, 3.6 * len(books)), squeeze=False)
    levels = list(scoring.LEVELS)
    for row, (m, bt) in enumerate(books):
        ax = axes[row, 0]
        if h in bt.horizons:
            j = bt.horizons.index(h)
            q = bt.quantiles["engine"][:, j]
            ok = np.isfinite(q[:, 0])
            dates = bt.dates[ok].astype("datetime64[D]")
            for lo, hi, alpha in ((0.01, 0.99, 0.12), (0.05, 0.95, 0.22), (0.25, 0.75, 0.4)):
                ax.fill_between(
                    dates,
                    q[ok, levels.index(lo)],
                    q[ok, levels.index(hi)],
                    color="tab:blue",
                    alpha=alpha,
                    lw=0,
                    label=f"{lo:g}-{hi:g}",
                )
            pnl = bt.pnl[ok, j]
            below = pnl < q[ok, levels.index(0.01)]
            ax.plot(dates, pnl, ".", color="black", ms=2.5, label=f"realised {h}-day P&L")
            ax.plot(dates[below], pnl[below], "o", color="tab:red", ms=4, mfc="none", label="below the 1% quantile")
            ax.set_title(f"{m['book']}: {h}-day P&L, engine's quantile bands at each origin", fontsize=9)
            ax.legend(fontsize=7, loc="upper left", ncol=4)
        ax = axes[row, 1]
        i = 0
        steps = np.isfinite(bt.fan[i, :, 0]).sum()
        s = np.arange(1, steps + 1)
        fl = list(book_backtest.FAN_LEVELS)
        for lo, hi, alpha in ((0.01, 0.99, 0.12), (0.05, 0.95, 0.22), (0.25, 0.75, 0.4)):
            ax.fill_between(
                s, bt.fan[i, :steps, fl.index(lo)], bt.fan[i, :steps, fl.index(hi)], color="tab:blue", alpha=alpha, lw=0
            )
        ax.plot(s, bt.fan[i, :steps, fl.index(0.5)], color="tab:blue", lw=0.8, label="median")
        t = bt.origins[i]
        y = bt.book.coordinates()
        after = book_baselines.units(y[t + 1 : t + 1 + steps] - y[t], bt.book.prices) @ bt.book.exposures
        ax.plot(s[: len(after)], after, color="black", lw=0.9, label="realised P&L")
        ax.set_title(f"{m['book']}: P&L fan from {str(bt.dates[i])[:10]}, 1..{steps} days (0.01-0.99)", fontsize=9)
        ax.set_xlabel("days ahead")
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def dependence(ms: list[dict], path: Path) -> None:
    """Per book: average pairwise correlation in calm and stress (realised vs each method's
    1-day draws), and in the book's worst 5% outcomes vs all."""
    plt = _plt()
    fig, axes = plt.subplots(2, len(ms), figsize=(4.6 * len(ms), 7), squeeze=False)
    for col, m in enumerate(ms):
        d = m["dependence"]
        labels = ["realised", *SHOWN]
        for row, (part, keys, names) in enumerate(
            (
                (d, ("calm", "stress"), ("calm (book vol < median)", "stress (top quartile)")),
                (d["tail"], ("all", "worst"), ("all", "book's worst 5%")),
            )
        ):
            ax = axes[row, col]
            x = np.arange(len(labels))
            for k, (key, name) in enumerate(zip(keys, names, strict=True)):
                values = [part["realised"][key]] + [part["methods"][s][key] for s in SHOWN]
                ax.bar(x + (k - 0.5) * 0.38, values, 0.38, label=name, color=("tab:green", "tab:red")[k], alpha=0.75)
            ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
            ax.axhline(0, color="black", lw=0.6)
            what = "next 20 days' daily changes" if row == 0 else "held-out daily changes / EWMA vol"
            ax.set_title(
                f"{m['book']}: mean pairwise correlation\n(realised: {what}; methods: 1-day draws)", fontsize=8
            )
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def coverage(books: list, path: Path) -> None:
    """Per book: each series' 90% coverage of the engine's intervals at every horizon."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(books), figsize=(5 * len(books), 3.8), squeeze=False)
    for col, (m, _) in enumerate(books):
        ax = axes[0, col]
        cov = m["coverage90"]
        steps = np.array(cov["steps"])
        ax.fill_between([1, 60], 0.87, 0.93, color="0.88", label="target (1-60: 3 points)")
        ax.fill_between([240, 250], 0.82, 0.98, color="0.8", label="target (250: 8 points)")
        for name, values in cov["by_series"].items():
            ax.plot(steps, values, lw=0.7, alpha=0.8, label=name if len(cov["by_series"]) <= 5 else None)
        ax.axhline(0.9, color="black", ls="--", lw=0.8)
        ax.set_ylim(0.5, 1.0)
        ax.set_xscale("log")
        ax.set_xlabel("horizon (trading days)")
        ax.set_title(f"{m['book']}: engine's per-series 90% coverage", fontsize=9)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
