"""The report's plot: latency against throughput per model (matplotlib, imported only here)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from .cells import CellConfig


def plot_results(results: dict, path: Path) -> None:
    """Latency (p50 and p99) against throughput, one panel per model: each served configuration
    over its concurrencies, and the in-process fast and plain forwards over their batch sizes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = results["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 5), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        for cell in model["serve"]:
            levels = cell["levels"]
            x = [lv["throughput"] for lv in levels]
            y = [lv["p50_ms"] for lv in levels]
            label = f"TorchServe {CellConfig(**cell['config']).label}"
            (line,) = ax.plot(x, y, "o-", label=label)
            ax.plot(x, [lv["p99_ms"] for lv in levels], "v:", color=line.get_color(), alpha=0.6)
            for lv in levels:
                ax.annotate(
                    f"c{lv['concurrency']}",
                    (lv["throughput"], lv["p50_ms"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, 3),
                )
        rows = model["in_process"]["rows"]
        for key, style, label in (
            ("fast", "s--", "in process, fast forward (2 threads)"),
            ("plain", "x-.", "in process, plain step-by-step (2 threads)"),
        ):
            ax.plot(
                [r[f"{key}_wps"] for r in rows],
                [r[f"{key}_ms"] for r in rows],
                style,
                color="gray" if key == "fast" else "black",
                label=label,
            )
            for r in rows:
                ax.annotate(
                    f"b{r['batch']}",
                    (r[f"{key}_wps"], r[f"{key}_ms"]),
                    fontsize=7,
                    textcoords="offset points",
                    xytext=(3, -9),
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("throughput (forecasts/s)")
        ax.set_ylabel("latency (ms): p50 solid, p99 dotted")
        ax.set_title(textwrap.fill(model["label"], 70), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
