"""Rolling-origin backtest of a quantile model on one price series, through the served code path.

    prices (dates, closes) -> every origin t from `start` on with a full window behind it and
    K days after it -> one single-price CSV request per origin (its last rows_needed rows)
    -> Forecaster.predict, as the server runs it -> each outcome's Forecast: quantile prices per step
    -> the same origins for the baselines, from the same prices: persistence (point forecast),
       historical simulation, filtered historical simulation on the model's own EWMA
       volatility, and GARCH(1,1) with Student-t innovations (`baselines.py`)
    -> per step: coverage of the 50% and 90% central intervals, pinball loss per level and
       averaged, Winkler scores, point MAE; at step 1, the 5% VaR backtest (Kupiec,
       Christoffersen, Basel traffic light over the last 250 days)

Quantiles are compared as log returns log(q / P_t): scale-free, so a series' level does not
weigh in, and pinball losses are reported in basis points of log return.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.kinds import PRICE
from alm_forecaster.train import baselines
from alm_forecaster.train import distribution_scoring as scoring

VAR_LEVEL = 0.05


@dataclass
class Backtest:
    """Outcomes and every method's quantile forecasts over the same origins."""

    series: str
    dates: np.ndarray  # origin dates (n,)
    target_dates: np.ndarray  # (n, K): the day each step forecasts
    prices: np.ndarray  # the price at each origin (n,)
    realised: np.ndarray  # (n, K) log returns that followed
    levels: tuple[float, ...]
    quantiles: dict[str, np.ndarray]  # method -> (n, K, Q) log-return quantiles
    points: dict[str, np.ndarray]  # method -> (n, K) point log-return forecasts

    @property
    def steps(self) -> int:
        return self.realised.shape[1]


def run(
    forecaster: Forecaster,
    name: str,
    dates: np.ndarray,
    prices: np.ndarray,
    start: int | None = None,
    every: int = 1,
    baselines_too: bool = True,
    batch: int = 256,
) -> Backtest:
    """Forecasts at origins ``start, start + every, ...`` (default start: the first with a window)."""
    head = forecaster.head
    if not head.levels:
        raise ValueError(f"model {forecaster.name!r} has no quantiles to backtest")
    needed = forecaster.rows_needed
    steps = head.steps
    first = needed - 1 if start is None else max(start, needed - 1)
    origins = np.arange(first, len(prices) - steps, every)
    if not len(origins):
        raise ValueError(f"{name}: {len(prices)} prices are too few: a backtest needs {needed + steps} at least")
    lines = [
        f"{d},{float(p)!r}" for d, p in zip(np.asarray(dates).astype("datetime64[D]").astype(str), prices, strict=True)
    ]
    y = PRICE.coordinates(prices)
    q = np.empty((len(origins), steps, len(head.levels)))
    for i in range(0, len(origins), batch):
        chunk = origins[i : i + batch]
        payloads = ["Date,Close\n" + "\n".join(lines[t - needed + 1 : t + 1]) + "\n" for t in chunk]
        for row, outcome in enumerate(forecaster.predict(payloads), start=i):
            if not outcome.ok:
                raise ValueError(f"{name}: origin {lines[origins[row]]}: {outcome.body}")
            q[row] = PRICE.coordinates(outcome.forecast.quantiles[0]) - y[origins[row]]
    realised = np.stack([y[origins + h] - y[origins] for h in range(1, steps + 1)], axis=1)
    quantiles = {"model": q}
    points = {"model": q[..., head.median_index], "persistence": np.zeros_like(realised)}
    if baselines_too:
        quantiles["historical_simulation"] = baselines.historical_simulation(y, origins, steps, head.levels)
        quantiles["filtered_hs_ewma"] = baselines.filtered_historical_simulation(y, origins, steps, head.levels)
        quantiles["garch11_t"] = baselines.garch_t(y, origins, steps, head.levels)
    dates = np.asarray(dates)
    targets = np.stack([dates[origins + h] for h in range(1, steps + 1)], axis=1)
    return Backtest(name, dates[origins], targets, prices[origins], realised, head.levels, quantiles, points)


def metrics(bt: Backtest) -> dict:
    """Per method and step: coverage, pinball, Winkler; point MAE; the step-1 VaR backtest."""
    levels = list(bt.levels)
    outer, inner = (levels.index(0.05), levels.index(0.95)), (levels.index(0.25), levels.index(0.75))
    out: dict = {
        "series": bt.series,
        "origins": len(bt.dates),
        "first": str(bt.dates[0])[:10],
        "last": str(bt.dates[-1])[:10],
        "levels": levels,
        "methods": {},
    }
    for method, q in bt.quantiles.items():
        steps = []
        for h in range(bt.steps):
            y = bt.realised[:, h]
            pin = {f"{lv:g}": scoring.pinball(y, q[:, h, j], lv) * 1e4 for j, lv in enumerate(levels)}
            steps.append(
                {
                    "step": h + 1,
                    "coverage90": scoring.coverage(y, q[:, h, outer[0]], q[:, h, outer[1]]),
                    "coverage50": scoring.coverage(y, q[:, h, inner[0]], q[:, h, inner[1]]),
                    "pinball_bp": pin,
                    "pinball_mean_bp": float(np.mean(list(pin.values()))),
                    "winkler90_bp": scoring.winkler(y, q[:, h, outer[0]], q[:, h, outer[1]], 0.10) * 1e4,
                    "winkler50_bp": scoring.winkler(y, q[:, h, inner[0]], q[:, h, inner[1]], 0.50) * 1e4,
                }
            )
        hits = bt.realised[:, 0] < q[:, 0, levels.index(VAR_LEVEL)]
        kupiec = scoring.kupiec(hits, VAR_LEVEL)
        christoffersen = scoring.christoffersen(hits)
        zone, exceptions = scoring.basel_zone(hits, VAR_LEVEL)
        out["methods"][method] = {
            "steps": steps,
            "var5_step1": {
                "violations": int(hits.sum()),
                "rate": float(hits.mean()),
                "kupiec_lr": kupiec[0],
                "kupiec_p": kupiec[1],
                "christoffersen_lr": christoffersen[0],
                "christoffersen_p": christoffersen[1],
                "basel_zone_last250": zone,
                "exceptions_last250": exceptions,
            },
        }
    out["point_mae_bp"] = {
        method: [float(np.mean(np.abs(np.expm1(bt.realised[:, h]) - np.expm1(p[:, h]))) * 1e4) for h in range(bt.steps)]
        for method, p in bt.points.items()
    }
    return out


def table(m: dict) -> str:
    """The metrics as a plain-text table (the backtest CLI prints it)."""
    lines = [f"{m['series']}: {m['origins']} origins {m['first']} .. {m['last']}, levels {m['levels']}"]
    header = f"{'method':24s} {'step':>4s} {'cov50':>6s} {'cov90':>6s} {'pinball':>8s} {'winkler90':>10s}"
    lines.append(header)
    for method, block in m["methods"].items():
        for s in block["steps"]:
            lines.append(
                f"{method:24s} {s['step']:4d} {s['coverage50']:6.3f} {s['coverage90']:6.3f} "
                f"{s['pinball_mean_bp']:8.2f} {s['winkler90_bp']:10.1f}"
            )
    lines.append("5% VaR at step 1:")
    for method, block in m["methods"].items():
        v = block["var5_step1"]
        lines.append(
            f"  {method:22s} violations {v['violations']} ({v['rate']:.3f}), Kupiec p {v['kupiec_p']:.3f}, "
            f"Christoffersen p {v['christoffersen_p']:.3f}, Basel zone (last 250 days) "
            f"{v['basel_zone_last250']} ({v['exceptions_last250']} exceptions)"
        )
    lines.append("point forecast MAE (bp of price) by step:")
    for method, values in m["point_mae_bp"].items():
        lines.append(f"  {method:22s} " + " ".join(f"{v:7.2f}" for v in values))
    return "\n".join(lines)


def fan_chart(bt: Backtest, path, step: int = 1, last: int = 250) -> None:
    """The model's quantile bands for ``step`` days ahead against the prices that followed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = list(bt.levels)
    q = bt.quantiles["model"][-last:, step - 1]
    base = bt.prices[-last:]
    dates = bt.target_dates[-last:, step - 1]
    actual = base * np.exp(bt.realised[-last:, step - 1])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for lo, hi, alpha in ((0.05, 0.95, 0.18), (0.25, 0.75, 0.35)):
        ax.fill_between(
            dates,
            base * np.exp(q[:, levels.index(lo)]),
            base * np.exp(q[:, levels.index(hi)]),
            color="tab:blue",
            alpha=alpha,
            lw=0,
            label=f"{int(lo * 100)}-{int(hi * 100)}% band",
        )
    ax.plot(dates, base * np.exp(q[:, levels.index(0.5)]), color="tab:blue", lw=0.8, label="median")
    ax.plot(dates, actual, color="black", lw=0.8, label=f"price {step} day(s) later")
    ax.set_title(f"{bt.series}: {step}-day-ahead quantile forecasts vs what happened (last {len(q)} origins)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def coverage_chart(m: dict, path) -> None:
    """Coverage of the 50% and 90% intervals by step, every method, nominal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, nominal in ((axes[0], "coverage90", 0.90), (axes[1], "coverage50", 0.50)):
        for method, block in m["methods"].items():
            ax.plot([s["step"] for s in block["steps"]], [s[key] for s in block["steps"]], marker="o", label=method)
        ax.axhline(nominal, color="black", lw=0.8, ls="--")
        ax.set_title(f"{m['series']}: {key[-2:]}% interval coverage by step")
        ax.set_xlabel("step (trading days ahead)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
