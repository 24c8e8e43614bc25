"""Rolling-origin backtest of a book: the served path engine and its baselines on the same origins.

    a book (book_data.Book: N aligned series, their kinds and exposures)
    -> origins every ``every`` days from the book's held-out start, each with ``history`` rows
       behind it (the request's history: the engine bootstraps it, the baselines fit it)
    -> per origin, the model's part through the served path: the book as a KServe
       ForecastRequest (options.scenarios) to Forecaster.predict; the answer's Forecast (the
       xLSTM's quantiles, all steps and levels) and the request's panel go to
       scenarios.simulate with ``return_paths`` (the same seed: the served answer's step-1 book
       quantiles must equal the scored paths', checked at every origin), up to the largest
       horizon; the same engine without the model's marginals (the ablation), and each series
       simulated alone (its own dates drawn: the engine's marginals with independent paths)
    -> the baselines from the same history (book_baselines.py): multivariate HS, multivariate
       FHS on EWMA volatility, constant-correlation GARCH(1,1)-t
    -> per method, origin and horizon: the book P&L's quantiles (0.01..0.99), VaR and ES, a
       thinned sorted sample (the ES test's simulation), energy and variogram scores of the
       P&L contributions (exposure x change of each series: the joint outcome in money), the
       1-day draws' average pairwise correlation (all, and the book's worst 5%); the engine's
       per-series 90% intervals at every step

Changes are in units: a price's simple return, a level's difference (the engine's paths).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from alm_forecaster import kserve, risk, scenarios
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.request import Request
from alm_forecaster.train import book_baselines as baselines
from alm_forecaster.train import book_scoring as scoring
from alm_forecaster.train.book_data import Book

HORIZONS = (1, 10, 20, 60, 250)
RISK_LEVELS = (0.95, 0.975, 0.99)
ES_LEVEL = 0.975
HISTORY = 1000
PATHS = 2000
EVERY = 5
#: Sorted P&L draws kept per origin, method and horizon (the ES test draws from them).
GRID = 500
FAN_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SERIES_LEVELS = (0.05, 0.95)
METHODS = ("engine", "engine_no_model", "independent", "historical", "filtered_hs", "ccc_garch_t")
#: The GARCH baseline is refitted when its last fit is this many trading days old.
GARCH_REFIT = 20
#: Origins per Forecaster.predict call (one batched forward).
BATCH = 8
#: The book's worst share of outcomes whose dependence is measured.
TAIL = 0.05


@dataclass
class BookBacktest:
    """Every method's summaries per origin (n) and horizon (H); the engine's per step (S)."""

    book: Book
    origins: np.ndarray  # (n,) row indices
    every: int
    history: int
    paths: int
    seed: int
    horizons: tuple[int, ...]
    realised: np.ndarray  # (n, H, N) changes in units, NaN past the data
    quantiles: dict = field(default_factory=dict)  # method -> (n, H, len(LEVELS)) P&L quantiles
    var: dict = field(default_factory=dict)  # method -> (n, H, len(RISK_LEVELS)) positive losses
    es: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)  # method -> (n, H, GRID) sorted P&L draws
    energy: dict = field(default_factory=dict)  # method -> (n, H)
    variogram: dict = field(default_factory=dict)
    correlation: dict = field(default_factory=dict)  # method -> (n, 2): 1-day, all / worst TAIL
    inside90: np.ndarray | None = None  # (n, S, N) the engine's per-series 90% interval held (1/0/NaN)
    fan: np.ndarray | None = None  # (n, S, len(FAN_LEVELS)) the engine's P&L quantiles per step
    served_difference: float = 0.0  # largest |served - scored| 1-day book quantile / its 1-99% range
    seconds: float = 0.0

    @property
    def pnl(self) -> np.ndarray:
        """(n, H) the realised book P&L."""
        return self.realised @ self.book.exposures

    @property
    def dates(self) -> np.ndarray:
        return self.book.dates[self.origins]


def origins_of(book: Book, every: int, history: int, start: str | None = None) -> np.ndarray:
    """Row indices from the held-out start (or ``start``), every ``every`` rows, each with
    ``history`` rows up to it and at least one day after it."""
    first = max(int(np.searchsorted(book.dates, np.datetime64(start or book.holdout_start))), history - 1)
    return np.arange(first, len(book.dates) - 1, every)


def document(book: Book, t: int, history: int, paths: int, seed: int, model: str = "alm_quantiles") -> dict:
    """The book at origin ``t`` as a served ForecastRequest: ``history`` rows, step 1 only."""
    rows = slice(t - history + 1, t + 1)
    start = f"{book.dates[rows.start]}T00:00:00Z"
    inputs = [
        {
            "type": kserve.UNIVARIATE,
            "name": name,
            "series": book.values[rows, i].tolist(),
            "frequency": "D",
            "start_timestamp": start,
            "kind": kind,
        }
        for i, (name, kind) in enumerate(zip(book.names, book.kinds, strict=True))
    ]
    scenario = {
        "paths": paths,
        "seed": seed,
        "exposures": {n: float(e) for n, e in zip(book.names, book.exposures, strict=True)},
        "risk_levels": list(RISK_LEVELS),
    }
    return {
        "model": model,
        "inputs": inputs,
        "options": {"horizon": 1, "quantiles": list(scoring.LEVELS), "scenarios": scenario},
    }


def run(
    forecaster: Forecaster,
    book: Book,
    every: int = EVERY,
    history: int = HISTORY,
    paths: int = PATHS,
    seed: int = 0,
    horizons: tuple[int, ...] = HORIZONS,
    start: str | None = None,
    progress=None,  # noqa: ANN001 - called with (done, total)
) -> BookBacktest:
    """Every method at origins every ``every`` days from the book's held-out start (or ``start``)."""
    began = time.perf_counter()
    origins = origins_of(book, every, history, start)
    if not len(origins):
        raise ValueError(f"{book.name}: no origin with {history} rows behind it and a day after it")
    y = book.coordinates()
    n, count, steps_max = len(origins), len(book.names), max(horizons)
    bt = BookBacktest(
        book, origins, every, history, paths, seed, tuple(horizons), np.full((n, len(horizons), count), np.nan)
    )
    for m in METHODS:
        bt.quantiles[m] = np.full((n, len(horizons), len(scoring.LEVELS)), np.nan)
        bt.var[m] = np.full((n, len(horizons), len(RISK_LEVELS)), np.nan)
        bt.es[m] = np.full_like(bt.var[m], np.nan)
        bt.grid[m] = np.full((n, len(horizons), GRID), np.nan)
        bt.energy[m] = np.full((n, len(horizons)), np.nan)
        bt.variogram[m] = np.full((n, len(horizons)), np.nan)
        bt.correlation[m] = np.full((n, 2), np.nan)
    bt.inside90 = np.full((n, steps_max, count), np.nan)
    bt.fan = np.full((n, steps_max, len(FAN_LEVELS)), np.nan)
    garch, fitted_at = None, -(10**9)
    for b in range(0, n, BATCH):
        chunk = origins[b : b + BATCH]
        docs = [document(book, int(t), history, paths, seed + int(t), forecaster.name) for t in chunk]
        outcomes = forecaster.predict([Request(d, "application/json") for d in docs])
        for i, t, doc, outcome in zip(range(b, b + len(chunk)), chunk, docs, outcomes, strict=True):
            if not outcome.ok:
                raise ValueError(f"{book.name}: origin {book.dates[t]}: {outcome.body}")
            steps = min(steps_max, len(book.dates) - 1 - int(t))
            for j, h in enumerate(horizons):
                if h <= steps:
                    bt.realised[i, j] = baselines.units(y[t + h] - y[t], book.prices)
            draws = engine_draws(forecaster, bt, i, int(t), doc, outcome, steps)
            past = y[t - history + 1 : t + 1]
            rng = np.random.default_rng([seed, int(t)])
            draws["historical"] = baselines.historical(past, horizons, book.prices)
            draws["filtered_hs"] = baselines.filtered_hs(past, horizons, book.prices, paths, rng)
            if t - fitted_at >= GARCH_REFIT:
                garch, fitted_at = None, int(t)
            draws["ccc_garch_t"], garch = baselines.ccc_garch_t(past, horizons, book.prices, paths, rng, garch)
            for m in METHODS:
                record(bt, m, i, draws[m], steps)
            if progress is not None:
                progress(i + 1, n)
    bt.seconds = time.perf_counter() - began
    return bt


def engine_draws(
    forecaster: Forecaster,
    bt: BookBacktest,
    i: int,
    t: int,
    doc: dict,
    outcome,
    steps: int,  # noqa: ANN001
) -> dict[str, list[np.ndarray | None]]:
    """The engine's, the ablation's and the independent paths' draws per horizon at origin
    ``i``; the engine's per-series coverage and P&L fan per step; the served-answer check."""
    book, horizons = bt.book, bt.horizons
    panel = kserve.parse(doc, forecaster.head.kinds).panel
    seed = doc["options"]["scenarios"]["seed"]
    settings = scenarios.Settings(
        bt.paths, steps, seed, SERIES_LEVELS, RISK_LEVELS, book.exposures.astype(np.float64), return_paths=True
    )
    paths = scenarios.simulate(panel, outcome.forecast, settings)
    pnl = paths.paths.astype(np.float64) @ settings.exposures  # (P, steps)
    # the served answer's 1-day book quantiles against the scored paths' (the engine sums the P&L
    # in float32: equal to that rounding), relative to the 1%-99% range of the P&L
    served = np.array([outcome.body["book"]["quantiles"][f"{lv:g}"][0] for lv in scoring.LEVELS])
    mine = risk.quantiles(pnl[:, 0], scoring.LEVELS)
    spread = max(float(mine[-1] - mine[0]), np.finfo(np.float64).tiny)
    bt.served_difference = max(bt.served_difference, float(np.max(np.abs(served - mine))) / spread)
    later = book.values[t + 1 : t + 1 + steps]  # (steps, N) what followed
    lo, hi = paths.series[:, :, 0].T, paths.series[:, :, 1].T  # (steps, N)
    bt.inside90[i, :steps] = ((later >= lo) & (later <= hi)).astype(np.float64)
    bt.fan[i, :steps] = risk.quantiles(pnl.T, FAN_LEVELS)
    ablation = scenarios.simulate(panel, outcome.forecast, replace(settings, model_marginals=False))
    # independent paths: each series' whole paths shuffled on their own (a permutation per
    # series): every series keeps exactly the engine's paths, no pairing between series survives
    rng = np.random.default_rng([seed, len(book.names)])
    independent = np.stack([paths.paths[rng.permutation(bt.paths), :, k] for k in range(len(book.names))], axis=2)

    def at(p: np.ndarray) -> list[np.ndarray | None]:
        return [p[:, h - 1].astype(np.float64) if h <= steps else None for h in horizons]

    return {"engine": at(paths.paths), "engine_no_model": at(ablation.paths), "independent": at(independent)}


def record(bt: BookBacktest, method: str, i: int, draws: list[np.ndarray | None], steps: int) -> None:
    """One method's draws per horizon at origin ``i`` -> its summaries and scores."""
    exposures = bt.book.exposures
    for j, h in enumerate(bt.horizons):
        d = draws[j]
        if d is None or h > steps:
            continue
        pnl = d @ exposures
        bt.quantiles[method][i, j] = risk.quantiles(pnl, scoring.LEVELS)
        bt.var[method][i, j], bt.es[method][i, j] = risk.var_es(pnl, RISK_LEVELS)
        ordered = np.sort(pnl)
        bt.grid[method][i, j] = ordered[np.linspace(0, len(pnl) - 1, GRID).round().astype(np.int64)]
        obs = bt.realised[i, j]
        if np.isfinite(obs).all():
            bt.energy[method][i, j] = scoring.energy(obs * exposures, d * exposures)
            bt.variogram[method][i, j] = scoring.variogram(obs * exposures, d * exposures)
        if j == 0:
            worst = pnl <= np.quantile(pnl, TAIL)
            bt.correlation[method][i] = (
                scoring.mean_pairwise_correlation(d),
                scoring.mean_pairwise_correlation(d[worst]),
            )


def metrics(bt: BookBacktest) -> dict:
    """Per horizon and method: the VaR tests (95%, 99%), the ES test (97.5%), mean pinball,
    energy and variogram scores, Diebold-Mariano against the engine; the Basel light per
    250-day window (99%, 1 day); the engine's per-series 90% coverage per step; dependence."""
    book, every = bt.book, bt.every
    pnl = bt.pnl
    rng = np.random.default_rng(bt.seed)
    r95, r975, r99 = (RISK_LEVELS.index(a) for a in (0.95, ES_LEVEL, 0.99))
    out: dict = {
        "book": book.name,
        "description": book.description,
        "series": list(book.names),
        "kinds": list(book.kinds),
        "exposures": {n: float(e) for n, e in zip(book.names, book.exposures, strict=True)},
        "holdout_start": book.holdout_start,
        "origins": len(bt.origins),
        "first": str(bt.dates[0]),
        "last": str(bt.dates[-1]),
        "data_end": str(book.dates[-1]),
        "every": every,
        "history": bt.history,
        "paths": bt.paths,
        "seconds": bt.seconds,
        "served_difference": bt.served_difference,
        "sources": book.sources,
        "horizons": [],
    }
    for j, h in enumerate(bt.horizons):
        rows = np.isfinite(pnl[:, j])
        for m in METHODS:
            rows &= np.isfinite(bt.quantiles[m][:, j, 0])
        entry: dict = {
            "h": h,
            "every": every,
            "origins": int(rows.sum()),
            "effective": scoring.effective_sample(int(rows.sum()), every, h),
        }
        if rows.sum() < 2:
            out["horizons"].append(entry)
            continue
        entry["last"] = str(bt.dates[rows][-1])
        x = pnl[rows, j]
        losses, methods = {}, {}
        for m in METHODS:
            var, es = bt.var[m][rows, j], bt.es[m][rows, j]
            losses[m] = {
                "pinball": scoring.pinball(x, bt.quantiles[m][rows, j]),
                "energy": bt.energy[m][rows, j],
                "variogram": bt.variogram[m][rows, j],
            }
            methods[m] = {
                "var95": scoring.var_tests(scoring.violations(x, var[:, r95]), 0.05),
                "var99": scoring.var_tests(scoring.violations(x, var[:, r99]), 0.01),
                "es975": scoring.z2_test(x, var[:, r975], es[:, r975], 1 - ES_LEVEL, bt.grid[m][rows, j], rng),
                **{k: float(np.nanmean(v)) for k, v in losses[m].items()},
            }
        lags = max(0, int(np.ceil(h / every)) - 1)
        entry["methods"] = methods
        entry["vs_engine"] = {
            m: {k: scoring.diebold_mariano(losses["engine"][k], losses[m][k], lags) for k in losses[m]}
            for m in METHODS[1:]
        }
        out["horizons"].append(entry)
    if 1 in bt.horizons:
        j = bt.horizons.index(1)
        rows = np.isfinite(pnl[:, j])
        per_window = max(1, round(250 / every))
        out["basel"] = {"per_window": per_window, "every": every, "methods": {}}
        dates = bt.dates[rows]
        for m in METHODS:
            hits = scoring.violations(pnl[rows, j], bt.var[m][rows, j, r99])
            windows = scoring.basel_windows(hits, per_window)
            for w in windows:
                w["from"], w["to"] = str(dates[w["first"]]), str(dates[w["first"] + w["n"] - 1])
            out["basel"]["methods"][m] = windows
    held = np.isfinite(bt.inside90[:, :, 0])
    with np.errstate(invalid="ignore"):
        coverage = np.nanmean(np.where(held[:, :, None], bt.inside90, np.nan), axis=0)
    counts = held.sum(axis=0)
    steps = [s for s in range(coverage.shape[0]) if counts[s] > 0]
    out["coverage90"] = {
        "steps": [s + 1 for s in steps],
        "origins": [int(counts[s]) for s in steps],
        "effective": [scoring.effective_sample(int(counts[s]), every, s + 1) for s in steps],
        "by_series": {name: [float(coverage[s, k]) for s in steps] for k, name in enumerate(book.names)},
    }
    if len(book.names) > 1:
        out["dependence"] = dependence(bt)
    return out


def dependence(bt: BookBacktest, window: int = 20) -> dict:
    """Dependence in calm and stress. Realised: the average pairwise correlation of the daily
    changes in the ``window`` days after each origin, and the book's volatility over them
    (stress: its top quartile, calm: below its median); each method's: the correlation of its
    1-day draws at the same origins. Joint tail: over the held-out days, the correlation of
    the changes standardised by their EWMA volatility, all days vs the book's worst TAIL days;
    each method's: its 1-day draws, all vs its worst TAIL draws (averaged over origins)."""
    book = bt.book
    r = baselines.units(np.diff(book.coordinates(), axis=0), book.prices)  # r[s]: day s to s+1
    realised_corr, volatility = [], []
    for t in bt.origins:
        block = r[t : t + window]
        full = len(block) == window
        realised_corr.append(scoring.mean_pairwise_correlation(block) if full else np.nan)
        volatility.append(float(np.std(block @ book.exposures)) if full else np.nan)
    realised_corr, volatility = np.array(realised_corr), np.array(volatility)
    ok = np.isfinite(volatility) & np.isfinite(realised_corr)
    stress = ok & (volatility >= np.nanquantile(volatility, 0.75))
    calm = ok & (volatility < np.nanquantile(volatility, 0.5))
    regimes = {"calm": calm, "stress": stress}
    out: dict = {
        "window": window,
        "origins": {k: int(v.sum()) for k, v in regimes.items()},
        "realised": {k: float(np.nanmean(realised_corr[v])) for k, v in regimes.items()},
        "methods": {m: {k: float(np.nanmean(bt.correlation[m][v, 0])) for k, v in regimes.items()} for m in METHODS},
    }
    first = bt.origins[0]
    z = r / np.sqrt(np.maximum(baselines.ewma_variance(r), np.finfo(np.float64).tiny))
    z, day_pnl = z[first:], r[first:] @ book.exposures
    worst = day_pnl <= np.quantile(day_pnl, TAIL)
    out["tail"] = {
        "days": int(len(day_pnl)),
        "realised": {"all": scoring.mean_pairwise_correlation(z), "worst": scoring.mean_pairwise_correlation(z[worst])},
        "methods": {
            m: {"all": float(np.nanmean(bt.correlation[m][:, 0])), "worst": float(np.nanmean(bt.correlation[m][:, 1]))}
            for m in METHODS
        },
    }
    return out


def table(m: dict) -> str:
    """The metrics as plain text (the backtest command prints it)."""
    lines = [
        f"book {m['book']}: {m['description']}",
        f"{m['origins']} origins {m['first']} .. {m['last']}, every {m['every']} days, {m['history']} rows of history, "
        f"{m['paths']} paths; P&L in the exposures' currency",
    ]
    for entry in m["horizons"]:
        if "methods" not in entry:
            continue
        lines.append(
            f"h = {entry['h']} days: {entry['origins']} origins (to {entry['last']}), effective sample "
            f"{entry['effective']:.0f} (origins x min(1, {m['every']}/h))"
        )
        lines.append(
            f"  {'method':16s} {'VaR95 viol/exp':>15s} {'Kupiec p':>8s} {'VaR99 viol/exp':>15s} {'Kupiec p':>8s} "
            f"{'ES Z2':>6s} {'p':>5s} {'pinball':>10s} {'energy':>10s} {'variogram':>11s}"
        )
        for name, x in entry["methods"].items():
            v95, v99, es = x["var95"], x["var99"], x["es975"]
            lines.append(
                f"  {name:16s} {v95['violations']:>7d}/{v95['expected']:<7.1f} {v95['kupiec_p']:8.3f} "
                f"{v99['violations']:>7d}/{v99['expected']:<7.1f} {v99['kupiec_p']:8.3f} "
                f"{es['z2']:6.2f} {es['p']:5.2f} "
                f"{x['pinball']:10.4g} {x['energy']:10.4g} {x['variogram']:11.4g}"
            )
    if "basel" in m:
        lines.append(f"Basel traffic light, 99% 1-day VaR, windows of {m['basel']['per_window']} origins (250 days):")
        for name, windows in m["basel"]["methods"].items():
            lines.append(f"  {name:16s} " + " ".join(f"{w['zone']}({w['exceptions']})" for w in windows))
    cov = m["coverage90"]
    worst = max(
        (
            (name, s, abs(c - 0.9))
            for name, values in cov["by_series"].items()
            for s, c in zip(cov["steps"], values, strict=True)
            if s <= 60
        ),
        key=lambda x: x[2],
        default=None,
    )
    if worst:
        lines.append(
            f"engine per-series 90% coverage, steps 1-60: worst {worst[0]} at step {worst[1]}, "
            f"{worst[2] * 100:.1f} points off"
        )
    return "\n".join(lines)
