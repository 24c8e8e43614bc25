"""Evaluate a checkpoint on the held-out chronological tail of a daily series.

Per horizon step: MAE, RMSE, MAPE and directional accuracy of the model, against
  - persistence: the price stays at the last close (predicted return 0),
  - drift: the training span's mean return for that step (a constant),
  - linear: ridge regression on the same inputs as the model (the flattened window of
    embeddings), fitted on the training span, its penalty chosen on the validation span,
plus Diebold-Mariano tests of the model's squared price errors against persistence and the
linear model. Writes ``<stem>.md``, ``<stem>.json`` and PNG plots.

The model's forecasts go through the serving path (`Forecaster.forward` on the windows the
feature pipeline builds), and the split is the one the checkpoint's metadata recorded (by
date) when the data covers it; otherwise the last ``test_fraction`` of the windows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from alm_forecaster.checkpoint import load_checkpoint
from alm_forecaster.contract import Window
from alm_forecaster.forecaster import Forecaster
from alm_forecaster.ohlcv_features import FEATURE_NAMES, LOOKBACK, FeaturePipeline
from alm_forecaster.train import scoring
from alm_forecaster.train.datasets import Series
from alm_forecaster.train.training import Split, chronological_split, return_targets, sample_ends, split_at, windows

#: The platform's original training default, used when a checkpoint does not record its own.
SEED_PREDICTION_OFFSET = 2
RIDGE_ALPHAS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7)
MODELS = ("model", "persistence", "drift", "linear")


@dataclass
class Evaluation:
    """Everything the report shows; ``to_dict`` is its JSON form."""

    name: str
    checkpoint: dict
    data: dict
    spans: dict
    split_source: str
    offset: int
    steps: int
    seq_len: int
    dates: np.ndarray  # (m,) window end dates of the test span (or row numbers)
    target_dates: np.ndarray  # (m,) dates of the first predicted day (t + offset)
    current: np.ndarray  # (m,)
    actual: np.ndarray  # (m, K) returns
    predictions: dict  # name -> (m, K) returns
    scores: dict  # name -> metrics dict
    up_share: np.ndarray
    tests: dict
    ridge_alpha: float

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "checkpoint": self.checkpoint,
            "data": self.data,
            "spans": self.spans,
            "split_source": self.split_source,
            "prediction_offset": self.offset,
            "steps": self.steps,
            "seq_len": self.seq_len,
            "ridge_alpha": self.ridge_alpha,
            "metrics": {name: scoring.summary(s) for name, s in self.scores.items()},
            "up_share": [round(float(x), 4) for x in self.up_share],
            "diebold_mariano": self.tests,
        }


def evaluate(checkpoint_path: str | Path, series: Series, name: str | None = None, offset: int | None = None):
    """Score a checkpoint on ``series``'s test span; returns an `Evaluation`."""
    path = Path(checkpoint_path)
    loaded = load_checkpoint(path)
    forecaster = Forecaster(loaded, name or path.stem, device=torch.device("cpu"))
    meta = loaded.metadata
    seq_len, steps = forecaster.seq_len, loaded.config.output_size
    offset = offset or meta.get("prediction_offset") or SEED_PREDICTION_OFFSET
    if loaded.feature_pipeline and series.bars is not None:
        embeddings, first_valid = FeaturePipeline.from_state(loaded.feature_pipeline).embed(series.bars), LOOKBACK
    elif series.embeddings is not None:
        embeddings, first_valid = series.embeddings, 0
    else:
        raise ValueError(f"{path.name} has no feature pipeline: evaluate it on an embeddings CSV, not OHLCV prices.")
    if embeddings.shape[1] != loaded.config.input_size:
        raise ValueError(
            f"the data has {embeddings.shape[1]} embedding columns, the model reads {loaded.config.input_size}."
        )

    ends = sample_ends(len(series), first_valid, seq_len, offset, steps)
    gap = offset + steps - 1
    split, source = _split(series, ends, meta, gap)
    targets = return_targets(series.prices, offset, steps)
    test = split.test
    actual, current = targets[test], series.raw_close[test]

    predictions = {
        "model": _model_returns(forecaster, embeddings, test, seq_len),
        "persistence": np.zeros_like(actual),
        "drift": np.broadcast_to(targets[split.train].mean(axis=0), actual.shape).copy(),
    }
    flat = {
        s: windows(embeddings, getattr(split, s), seq_len).reshape(len(getattr(split, s)), -1).astype(np.float64)
        for s in ("train", "val", "test")
    }
    alpha, w, b = scoring.ridge_select(
        flat["train"], targets[split.train], flat["val"], targets[split.val], RIDGE_ALPHAS
    )
    predictions["linear"] = flat["test"] @ w + b

    scores = {m: scoring.horizon_metrics(predictions[m], actual, current) for m in MODELS}
    tests = {}
    for other in ("persistence", "linear", "drift"):
        rows = []
        for k in range(steps):
            sq = {m: (current * (predictions[m][:, k] - actual[:, k])) ** 2 for m in ("model", other)}
            t, p = scoring.diebold_mariano(sq["model"], sq[other], lag=offset + k - 1)
            rows.append({"t": round(t, 3), "p": round(p, 4)})
        tests[f"model_vs_{other}"] = rows
    dates = series.dates[test] if series.dates is not None else test
    target_dates = series.dates[test + offset] if series.dates is not None else test + offset
    info = {
        "path": str(path),
        "sha256": loaded.sha256,
        "size_bytes": path.stat().st_size,
        "config": loaded.config.to_dict(),
        "parameters": forecaster.model.parameter_count(),
        "accepts": forecaster.describe()["accepts"],
        "metadata": _plain(meta),
    }
    spans = split.spans(series)
    data = {"name": series.name, "sha256": series.sha256, "rows": len(series)}
    return Evaluation(
        name=forecaster.name,
        checkpoint=info,
        data=data,
        spans=spans,
        split_source=source,
        offset=offset,
        steps=steps,
        seq_len=seq_len,
        dates=dates,
        target_dates=target_dates,
        current=current,
        actual=actual,
        predictions=predictions,
        scores=scores,
        up_share=scoring.up_share(actual),
        tests=tests,
        ridge_alpha=alpha,
    )


def _split(series: Series, ends: np.ndarray, meta: dict, gap: int) -> tuple[Split, str]:
    spans = meta.get("spans") or {}
    if series.dates is not None and "train" in spans and "val" in spans:
        train_end = np.datetime64(spans["train"]["end"])
        val_end = np.datetime64(spans["val"]["end"])
        if series.dates[0] <= train_end and val_end < series.dates[-1]:
            rows = np.searchsorted(series.dates, [train_end, val_end], side="right") - 1
            split = split_at(ends, int(rows[0]), int(rows[1]), gap)
            if len(split.train) > 1 and len(split.val) and len(split.test):
                return split, "the checkpoint's recorded train/validation/test dates"
    cfg = meta.get("train_config") or {}
    split = chronological_split(ends, cfg.get("val_fraction", 0.15), cfg.get("test_fraction", 0.15), gap)
    return split, "a chronological 70/15/15 split of this data (the checkpoint records no split that fits it)"


def _model_returns(forecaster: Forecaster, embeddings: np.ndarray, ends: np.ndarray, seq_len: int) -> np.ndarray:
    out = []
    for i in range(0, len(ends), 256):
        batch = windows(embeddings, ends[i : i + 256], seq_len)
        out.append(forecaster.forward([Window(x, 1.0) for x in batch]))
    return np.concatenate(out).astype(np.float64)


def _plain(value):  # noqa: ANN001, ANN202
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return f"tensor{tuple(value.shape)}"
    return value


# --------------------------------------------------------------------------- report


def write_report(ev: Evaluation, out_dir: str | Path, stem: str | None = None, command: str = "") -> Path:
    """``<stem>.md`` + ``<stem>.json`` + ``<stem>_*.png`` in ``out_dir``; returns the .md path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"{ev.name}-report"
    plots = _plots(ev, out, stem)
    (out / f"{stem}.json").write_text(json.dumps(ev.to_dict(), indent=1) + "\n")
    path = out / f"{stem}.md"
    path.write_text(_markdown(ev, plots, command))
    return path


def _plots(ev: Evaluation, out: Path, stem: str) -> dict:
    """Figures are drawn on `Figure` objects, never through pyplot: no GUI backend is chosen and
    no global figure state is left behind in the calling process."""
    files = {}
    x = ev.target_dates
    actual_1 = ev.current * (1 + ev.actual[:, 0])
    fig = Figure(figsize=(11, 7.5))
    axes = fig.subplots(2, 1)
    ax = axes[0]
    ax.plot(x, actual_1, color="black", lw=1.0, label="actual close")
    ax.plot(
        x,
        ev.current * (1 + ev.predictions["model"][:, 0]),
        color="tab:blue",
        lw=0.8,
        label=f"model forecast made {ev.offset} day(s) before",
    )
    ax.set_title(f"{ev.name}: test span, actual close vs the model's step-1 forecast of it")
    ax.set_ylabel("price")
    ax.legend(loc="best")
    ax = axes[1]
    tail = slice(max(len(x) - 60, 0), None)
    ax.plot(x[tail], actual_1[tail], color="black", lw=1.2, marker=".", label="actual close")
    for name, color in (("model", "tab:blue"), ("linear", "tab:orange")):
        ax.plot(
            x[tail],
            (ev.current * (1 + ev.predictions[name][:, 0]))[tail],
            color=color,
            lw=1.0,
            label=f"{name} (step 1)",
        )
    ax.plot(x[tail], ev.current[tail], color="gray", lw=1.0, ls="--", label="persistence (previous close)")
    ax.set_title(
        "last 60 days of the test span, each forecast on the day it forecasts (lines that coincide hide each other)"
    )
    ax.legend(loc="best", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    files["Actual vs forecast over the test span"] = _save(fig, out, f"{stem}_forecast.png")

    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)
    steps = [f"t+{ev.offset + k}" for k in range(ev.steps)]
    styles = {"model": "tab:blue", "persistence": "gray", "linear": "tab:orange", "drift": "tab:green"}
    base = ev.scores["persistence"]
    for name, color in styles.items():
        axes[0].plot(steps, ev.scores[name]["rmse"] / base["rmse"], marker="o", color=color, label=name)
        axes[1].plot(steps, ev.scores[name]["mae"] / base["mae"], marker="o", color=color, label=name)
        if ev.scores[name]["directional_accuracy"] is not None:
            axes[2].plot(steps, ev.scores[name]["directional_accuracy"], marker="o", color=color, label=name)
    axes[2].plot(steps, ev.up_share, ls=":", color="black", label="always up")
    axes[2].axhline(50, color="lightgray", lw=0.8)
    for ax, title in zip(
        axes, ("RMSE / persistence RMSE", "MAE / persistence MAE", "directional accuracy %"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("horizon step")
    axes[0].legend()
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    files["Error by horizon step"] = _save(fig, out, f"{stem}_by_step.png")

    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    ax.scatter(100 * ev.actual[:, 0], 100 * ev.predictions["model"][:, 0], s=4, alpha=0.5, label="model")
    ax.scatter(
        100 * ev.actual[:, 0], 100 * ev.predictions["linear"][:, 0], s=4, alpha=0.5, label="linear", color="tab:orange"
    )
    ax.axhline(0, color="gray", lw=0.8)
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_xlabel(f"actual return to t+{ev.offset} (%)")
    ax.set_ylabel("predicted return (%)")
    ax.set_title("predicted vs actual 1-step returns")
    ax.legend()
    fig.tight_layout()
    files["Predicted vs actual returns (step 1)"] = _save(fig, out, f"{stem}_returns.png")
    return files


def _save(fig: Figure, out: Path, name: str) -> str:
    fig.savefig(out / name, dpi=90)
    return name


def _markdown(ev: Evaluation, plots: dict, command: str) -> str:
    meta = ev.checkpoint["metadata"]
    cfg = ev.checkpoint["config"]
    lines = [f"# Evaluation report: `{ev.name}`", ""]
    if command:
        lines += [f"Generated by `{command}`.", ""]
    lines += ["## Summary", ""]
    lines += [f"- {line}" for line in verdict(ev)]
    lines += [
        "",
        "Daily index returns are close to unpredictable; a forecaster that is about as good as persistence is the "
        "expected outcome, and nothing in these numbers supports trading on the model's forecasts.",
        "",
        "## Model and data",
        "",
        f"- Checkpoint: `{ev.checkpoint['path']}` ({ev.checkpoint['size_bytes'] / 1e6:.2f} MB, sha256 "
        f"`{ev.checkpoint['sha256'][:16]}...`), {ev.checkpoint['parameters']:,} parameters; input {cfg['input_size']}, "
        f"hidden {cfg['hidden_size']}, {cfg['num_layers']} layer(s) per block, blocks `{cfg['block_pattern']}`, "
        f"{ev.steps} predicted steps, window {ev.seq_len} days; accepts {' and '.join(ev.checkpoint['accepts'])}.",
        f"- Target: simple return of the close `{ev.offset}+k` trading days after the window's last day, k = 0.."
        f"{ev.steps - 1} (step 1 = t+{ev.offset}); forecast price = last close x (1 + predicted return).",
        f"- Data: `{ev.data['name']}`, {ev.data['rows']} rows, sha256 `{ev.data['sha256'][:16]}...`.",
        f"- Split ({ev.split_source}), by the window's last day:",
    ]
    for span, value in ev.spans.items():
        lines.append(f"  - {span}: {value['start']} .. {value['end']} ({value['samples']} windows)")
    if meta.get("command"):
        lines.append(
            f"- Trained with `{meta['command']}` (seed {meta.get('seed')}, {meta.get('torch_threads')} torch threads); "
            f"best validation epoch {meta.get('best_epoch')} of {meta.get('epochs_run')} (early stopping)."
        )
    if "untrained_val_loss_standardised" in meta:
        untrained, best = meta["untrained_val_loss_standardised"], meta["best_val_loss_standardised"]
        relation = "below" if best < untrained else "not below"
        lines.append(
            f"- Validation loss (MSE of standardised returns): {best:.6f} at the chosen epoch, {relation} the "
            f"{untrained:.6f} of the untrained network, whose zero-initialised head predicts the training drift."
        )
    pipeline = meta.get("feature_pipeline")
    if pipeline:
        lines.append(
            f"- Features: {pipeline['features']} technical features of daily OHLCV -> standardised -> PCA to "
            f"{pipeline['input_size']} dims ({100 * pipeline['explained_variance']:.1f}% of the variance), fitted on "
            f"{pipeline['fit_span'].get('start')} .. {pipeline['fit_span'].get('end')}; a request needs "
            f"{pipeline['rows_needed']} rows (a {pipeline['lookback']}-day lookback for the features of each of the "
            f"{ev.seq_len} window days). Every feature of day t reads days t-{pipeline['lookback']}..t only."
        )
        lines.append(f"- The features: {', '.join(f'`{n}`' for n in FEATURE_NAMES)}.")
    lines += [
        f"- Linear model: ridge regression on the flattened {ev.seq_len}-day window of the same embeddings, "
        f"alpha = {ev.ridge_alpha:g} chosen on the validation span. Drift: the training span's mean return per step.",
        "",
        f"## Test span metrics ({len(ev.actual)} forecasts, {ev.spans['test']['start']} .. {ev.spans['test']['end']})",
        "",
        "Prices in index points. DA = directional accuracy (sign of the predicted move vs the actual move); "
        "persistence predicts no move, so it has none. 'Always up' = share of up moves.",
        "",
        "| step | model MAE | persist. MAE | linear MAE | drift MAE | model RMSE | persist. RMSE | linear RMSE | "
        "drift RMSE | model MAPE % | persist. MAPE % | model DA % | linear DA % | drift DA % | always up % |",
        "|---" * 15 + "|",
    ]
    s = ev.scores
    for k in range(ev.steps):
        lines.append(
            f"| t+{ev.offset + k} | {s['model']['mae'][k]:.3f} | {s['persistence']['mae'][k]:.3f} | "
            f"{s['linear']['mae'][k]:.3f} | {s['drift']['mae'][k]:.3f} | {s['model']['rmse'][k]:.3f} | "
            f"{s['persistence']['rmse'][k]:.3f} | {s['linear']['rmse'][k]:.3f} | {s['drift']['rmse'][k]:.3f} | "
            f"{s['model']['mape'][k]:.4f} | {s['persistence']['mape'][k]:.4f} | "
            f"{s['model']['directional_accuracy'][k]:.1f} | {s['linear']['directional_accuracy'][k]:.1f} | "
            f"{s['drift']['directional_accuracy'][k]:.1f} | {ev.up_share[k]:.1f} |"
        )
    lines += [
        "",
        "### Diebold-Mariano tests (squared price errors; t < 0: the model's errors are smaller)",
        "",
        "| step | vs persistence: t | p | vs linear: t | p | vs drift: t | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in range(ev.steps):
        a, b, c = (ev.tests[f"model_vs_{o}"][k] for o in ("persistence", "linear", "drift"))
        lines.append(
            f"| t+{ev.offset + k} | {a['t']:.2f} | {a['p']:.3f} | {b['t']:.2f} | {b['p']:.3f} | {c['t']:.2f} | "
            f"{c['p']:.3f} |"
        )
    ratio = s["model"]["rmse"] / s["persistence"]["rmse"]
    lines += ["", "RMSE / persistence RMSE per step: " + ", ".join(f"{r:.4f}" for r in ratio), ""]
    val = meta.get("metrics", {}).get("val")
    if val:
        lines += [
            "Validation span (from the checkpoint's metadata), model RMSE per step: "
            + ", ".join(f"{x:.3f}" for x in val["rmse"]),
            "",
        ]
    lines += ["## Plots", ""]
    for title, file in plots.items():
        lines += [f"### {title}", "", f"![{title}]({file})", ""]
    return "\n".join(lines)


def verdict(ev: Evaluation) -> list[str]:
    """Plain statements of how the model compares with persistence, from the numbers only."""
    model, persist, linear = ev.scores["model"], ev.scores["persistence"], ev.scores["linear"]
    ratio = model["rmse"] / persist["rmse"]
    p_values = [row["p"] for row in ev.tests["model_vs_persistence"]]
    better = [k for k in range(ev.steps) if ratio[k] < 1 and p_values[k] < 0.05]
    worse = [k for k in range(ev.steps) if ratio[k] > 1 and p_values[k] < 0.05]
    lines = [
        f"RMSE relative to persistence ranges from {ratio.min():.4f} to {ratio.max():.4f} across the {ev.steps} "
        f"steps (below 1 = better than 'price stays at the last close'); MAE relative to persistence from "
        f"{(model['mae'] / persist['mae']).min():.4f} to {(model['mae'] / persist['mae']).max():.4f}."
    ]
    if not better and not worse:
        lines.append(
            "None of the differences with persistence is statistically significant at the 5% level (Diebold-Mariano "
            "test on squared errors, Newey-West variance): on this test span the model is **not distinguishable from "
            "persistence**."
        )
    else:
        if better:
            lines.append(
                f"The model is significantly better than persistence (5% level) at steps {_steps(ev, better)}."
            )
        if worse:
            lines.append(f"The model is significantly worse than persistence (5% level) at steps {_steps(ev, worse)}.")
    da = model["directional_accuracy"]
    lines.append(
        f"Directional accuracy: {da.min():.1f}%-{da.max():.1f}% per step, against {ev.up_share.min():.1f}%-"
        f"{ev.up_share.max():.1f}% for always predicting 'up' (the share of up moves in the test span) and "
        f"{linear['directional_accuracy'].min():.1f}%-{linear['directional_accuracy'].max():.1f}% for the linear model."
    )
    up = 100.0 * (ev.predictions["model"] > 0).mean(axis=0)
    if (up == 100.0).all() or (up == 0.0).all():
        lines.append(
            f"The model predicts a {'rise' if up[0] == 100.0 else 'fall'} at every step of every forecast, so its "
            "directional accuracy is just the share of moves in that direction: it carries no timing information."
        )
    else:
        lines.append(f"The model predicts a rise in {up.min():.1f}%-{up.max():.1f}% of the forecasts, per step.")
    lin_ratio = linear["rmse"] / persist["rmse"]
    drift_ratio = ev.scores["drift"]["rmse"] / persist["rmse"]
    lines.append(
        f"RMSE relative to persistence of the baselines: linear {lin_ratio.min():.4f}-{lin_ratio.max():.4f}, "
        f"drift (the training span's mean return) {drift_ratio.min():.4f}-{drift_ratio.max():.4f}."
    )
    for other in ("linear", "drift"):
        rows = ev.tests[f"model_vs_{other}"]
        worse = [k for k, row in enumerate(rows) if row["p"] < 0.05 and row["t"] > 0]
        better = [k for k, row in enumerate(rows) if row["p"] < 0.05 and row["t"] < 0]
        if worse:
            lines.append(
                f"The model is significantly worse than the {other} baseline (5% level) at {_steps(ev, worse)}."
            )
        if better:
            lines.append(
                f"The model is significantly better than the {other} baseline (5% level) at {_steps(ev, better)}."
            )
        if not worse and not better:
            lines.append(f"No significant difference from the {other} baseline at any step (5% level).")
    if ev.ridge_alpha == max(RIDGE_ALPHAS):
        lines.append(
            f"The validation span chose the strongest ridge penalty tried ({ev.ridge_alpha:g}): the linear model is "
            "shrunk to (almost) the drift, i.e. no linear signal in the features held up out of sample."
        )
    return lines


def _steps(ev: Evaluation, ks: list[int]) -> str:
    return ", ".join(f"t+{ev.offset + k}" for k in ks)
