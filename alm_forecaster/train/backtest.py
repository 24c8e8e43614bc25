"""Rolling-origin backtest of a quantile model on one series, through the served code path.

    values (dates, one value a day) of a series kind (kinds.py: ``price`` or ``level``)
    -> every origin t from `start` on with a full window behind it and K days after it
    -> one single-series CSV request per origin (its last rows_needed rows; a level series is
       sent as ``Request(csv, kind="level")``, what the header ``X-Series-Kind: level`` makes)
    -> Forecaster.predict, as the server runs it -> each outcome's Forecast: quantile values per step
    -> the same origins for the baselines, from the same values: persistence (point forecast),
       historical simulation, filtered historical simulation on the model's own EWMA
       volatility, and GARCH(1,1) with Student-t innovations (`baselines.py`)
    -> per step: coverage of the 50% and 90% central intervals, pinball loss per level and
       averaged, Winkler scores, point MAE; at step 1, the 5% VaR backtest (Kupiec,
       Christoffersen, Basel traffic light over the last 250 days)

Everything is compared in the series' additive coordinates y (``KINDS[kind].coordinates``):
realised changes y[t+h] - y[t], the model's quantiles y(q) - y(anchor), the baselines' changes.
For prices that is log returns log(q / P_t), scale-free, and losses are in basis points of log
return; for levels it is differences in the series' own units, and losses are in hundredths of
that unit (`UNITS`: basis points for a yield quoted in percent, 1 bp = 0.01).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alm_forecaster.forecaster import Forecaster
from alm_forecaster.kinds import DEFAULT as DEFAULT_KIND
from alm_forecaster.kinds import KINDS, LEVEL, PRICE
from alm_forecaster.request import Request
from alm_forecaster.train import baselines
from alm_forecaster.train import distribution_scoring as scoring

VAR_LEVEL = 0.05
#: Per kind: (what a loss of 1 is called, the factor from changes in y to it). Prices: basis
#: points of log return; levels: hundredths of the series' unit (basis points of a yield in percent).
UNITS = {
    PRICE.name: ("bp of log return", 1e4),
    LEVEL.name: ("bp = 0.01 of the series' unit", 1e2),
}
#: Per kind: the CSV header a backtest request is sent with.
_HEADERS = {PRICE.name: "Date,Close", LEVEL.name: "Date,Value"}


@dataclass
class Backtest:
    """Outcomes and every method's quantile forecasts over the same origins."""

    series: str
    dates: np.ndarray  # origin dates (n,)
    target_dates: np.ndarray  # (n, K): the day each step forecasts
    prices: np.ndarray  # the value at each origin (n,): a price, or a level
    realised: np.ndarray  # (n, K) changes in y that followed (log returns for a price)
    levels: tuple[float, ...]
    quantiles: dict[str, np.ndarray]  # method -> (n, K, Q) quantiles of the change in y
    points: dict[str, np.ndarray]  # method -> (n, K) point forecasts of the change in y
    kind: str = DEFAULT_KIND  # the series kind (kinds.py)

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
    kind: str = DEFAULT_KIND,
    garch: bool = True,
) -> Backtest:
    """Forecasts at origins ``start, start + every, ...`` (default start: the first with a window)
    of a series of ``kind``; ``garch=False`` leaves GARCH out of the baselines (the slow one)."""
    head = forecaster.head
    if not head.levels:
        raise ValueError(f"model {forecaster.name!r} has no quantiles to backtest")
    if kind not in head.kinds:
        raise ValueError(
            f"model {forecaster.name!r} does not forecast {kind} series (it serves: {', '.join(head.kinds)})"
        )
    series_kind = KINDS[kind]
    needed = forecaster.rows_needed
    steps = head.steps
    first = needed - 1 if start is None else max(start, needed - 1)
    origins = np.arange(first, len(prices) - steps, every)
    if not len(origins):
        raise ValueError(f"{name}: {len(prices)} prices are too few: a backtest needs {needed + steps} at least")
    lines = [
        f"{d},{float(p)!r}" for d, p in zip(np.asarray(dates).astype("datetime64[D]").astype(str), prices, strict=True)
    ]
    y = series_kind.coordinates(prices)
    header = _HEADERS[kind] + "\n"
    q = np.empty((len(origins), steps, len(head.levels)))
    for i in range(0, len(origins), batch):
        chunk = origins[i : i + batch]
        payloads = [header + "\n".join(lines[t - needed + 1 : t + 1]) + "\n" for t in chunk]
        requests = payloads if kind == DEFAULT_KIND else [Request(p, kind=kind) for p in payloads]
        for row, outcome in enumerate(forecaster.predict(requests), start=i):
            if not outcome.ok:
                raise ValueError(f"{name}: origin {lines[origins[row]]}: {outcome.body}")
            forecast = outcome.forecast
            q[row] = series_kind.coordinates(forecast.quantiles[0]) - series_kind.coordinates(forecast.anchors[0])
    realised = np.stack([y[origins + h] - y[origins] for h in range(1, steps + 1)], axis=1)
    quantiles = {"model": q}
    points = {"model": q[..., head.median_index], "persistence": np.zeros_like(realised)}
    if baselines_too:
        quantiles["historical_simulation"] = baselines.historical_simulation(y, origins, steps, head.levels)
        quantiles["filtered_hs_ewma"] = baselines.filtered_historical_simulation(y, origins, steps, head.levels)
        if garch:
            quantiles["garch11_t"] = baselines.garch_t(y, origins, steps, head.levels)
    dates = np.asarray(dates)
    targets = np.stack([dates[origins + h] for h in range(1, steps + 1)], axis=1)
    return Backtest(name, dates[origins], targets, prices[origins], realised, head.levels, quantiles, points, kind)


def metrics(bt: Backtest) -> dict:
    """Per method and step: coverage, pinball, Winkler; point MAE; the step-1 VaR backtest.

    Losses (keys ``*_bp``) are in the unit `UNITS` gives the series' kind; a level series'
    metrics also say which (``kind``, ``unit``)."""
    levels = list(bt.levels)
    unit, factor = UNITS[bt.kind]
    outer, inner = (levels.index(0.05), levels.index(0.95)), (levels.index(0.25), levels.index(0.75))
    out: dict = {
        "series": bt.series,
        "origins": len(bt.dates),
        "first": str(bt.dates[0])[:10],
        "last": str(bt.dates[-1])[:10],
        "levels": levels,
        "methods": {},
    }
    if bt.kind != DEFAULT_KIND:  # a price's metrics keep the keys they always had
        out["kind"], out["unit"] = bt.kind, unit
    for method, q in bt.quantiles.items():
        steps = []
        for h in range(bt.steps):
            y = bt.realised[:, h]
            pin = {f"{lv:g}": scoring.pinball(y, q[:, h, j], lv) * factor for j, lv in enumerate(levels)}
            steps.append(
                {
                    "step": h + 1,
                    "coverage90": scoring.coverage(y, q[:, h, outer[0]], q[:, h, outer[1]]),
                    "coverage50": scoring.coverage(y, q[:, h, inner[0]], q[:, h, inner[1]]),
                    "pinball_bp": pin,
                    "pinball_mean_bp": float(np.mean(list(pin.values()))),
                    "winkler90_bp": scoring.winkler(y, q[:, h, outer[0]], q[:, h, outer[1]], 0.10) * factor,
                    "winkler50_bp": scoring.winkler(y, q[:, h, inner[0]], q[:, h, inner[1]], 0.50) * factor,
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
    # a price's point error in bp of the price (simple returns); a level's in its loss unit
    change = np.expm1 if bt.kind == PRICE.name else (lambda d: d)
    out["point_mae_bp"] = {
        method: [float(np.mean(np.abs(change(bt.realised[:, h]) - change(p[:, h]))) * factor) for h in range(bt.steps)]
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
    if "unit" in m:  # a level series (a price's table reads as it always has: bp of log return)
        lines.insert(1, f"pinball loss, Winkler score and point MAE in {m['unit']}")
    lines.append(f"point forecast MAE ({m.get('unit', 'bp of price')}) by step:")
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
    kind = KINDS[bt.kind]

    def values(changes: np.ndarray) -> np.ndarray:
        return kind.values(base, changes)

    actual = values(bt.realised[-last:, step - 1])
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for lo, hi, alpha in ((0.05, 0.95, 0.18), (0.25, 0.75, 0.35)):
        ax.fill_between(
            dates,
            values(q[:, levels.index(lo)]),
            values(q[:, levels.index(hi)]),
            color="tab:blue",
            alpha=alpha,
            lw=0,
            label=f"{int(lo * 100)}-{int(hi * 100)}% band",
        )
    ax.plot(dates, values(q[:, levels.index(0.5)]), color="tab:blue", lw=0.8, label="median")
    ax.plot(dates, actual, color="black", lw=0.8, label=f"{'price' if kind is PRICE else 'value'} {step} day(s) later")
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
