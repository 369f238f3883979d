"""bench.png: training time, LiteRT latency, GFLOP/s against the peaks, int8 speedups."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.bench.gemm import GOALS
from toolkit.figures import pyplot, save_figure


def _training_panel(ax, result: dict) -> None:
    names = ["tutorial", "toolkit"]
    ax.bar(names, [result["median_seconds"][n] for n in names], color=["tab:gray", "tab:blue"])
    for i, name in enumerate(names):
        seconds = [run["seconds"] for run in result[name]]
        ax.plot([i] * len(seconds), seconds, "k.", alpha=0.6)
    ax.set(title=f"1. Training wall time ({result['speedup']:.2f}x)", ylabel="s (median, reps)")


def _grouped_bars(ax, labels: list[str], series: dict[str, list[float]]) -> None:
    width = 0.8 / len(series)
    x = np.arange(len(labels))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.legend(fontsize=8)


def _latency_panel(ax, rows: list[dict]) -> None:
    keys = {
        "toolkit": "toolkit_p50_ms",
        "bare loop": "bare_p50_ms",
        "LiteRT tool": "tool_median_ms",
    }
    series = {name: [1000 * r[key] for r in rows] for name, key in keys.items()}
    _grouped_bars(ax, [r["artifact"] for r in rows], series)
    ax.set(title="2. LiteRT batch-1 p50", ylabel="µs")


def _gemm_panel(ax, result: dict) -> None:
    artifacts = sorted(result["artifacts"], key=lambda a: -a["fraction"])
    colours = {"float32": "tab:blue", "int8": "tab:orange"}
    ax.bar(
        [a["artifact"] for a in artifacts],
        [a["fraction"] for a in artifacts],
        color=[colours[a["precision"]] for a in artifacts],
    )
    for kind, goal in GOALS.items():
        ax.axhline(goal, color=colours[kind], linestyle="--", label=f"{kind} goal")
    ax.tick_params(axis="x", rotation=30, labelsize=7)
    ax.set(title="3. Throughput x FLOPs/image / GEMM peak of its precision", ylabel="fraction")
    ax.legend(fontsize=8)


def _int8_panel(ax, comparisons: list[dict]) -> None:
    series = {
        "latency": [c["latency_speedup"] for c in comparisons],
        "throughput": [c["throughput_speedup"] for c in comparisons],
    }
    _grouped_bars(ax, [c["artifact"] for c in comparisons], series)
    ax.axhline(1, color="k", linewidth=0.8)
    ax.set(title="4. int8 speedup over float32 (same runtime)", ylabel="x")


def plot_bench(bench: dict, path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    _training_panel(axes[0, 0], bench["training"])
    _latency_panel(axes[0, 1], bench["litert"])
    _gemm_panel(axes[1, 0], bench["gemm"])
    _int8_panel(axes[1, 1], bench["int8"])
    fig.tight_layout()
    return save_figure(fig, path)
