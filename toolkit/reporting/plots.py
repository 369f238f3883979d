"""The report's plots: accuracy against latency, latency distribution, size, accuracy per class.

Each draws from the Report alone, so a re-render draws the same plots; matplotlib loads on the
first one. Every name drawn passes through `literal_text`.
"""

from __future__ import annotations

import numpy as np

from toolkit.figures import literal_text, pyplot
from toolkit.metrics import pareto_front
from toolkit.reporting.cells import (
    STAR,
    class_name,
    human_size,
    latency_unit,
    ok_rows,
    short,
    sorted_rows,
    three_digits,
)
from toolkit.results import Report

HEAT_MAP_CLASSES = 20  # up to this many classes the heat map shows all; above, the worst


def _nothing_to_plot(ax, message: str = "no successful artifacts") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def accuracy_vs_latency_figure(report: Report):
    """Accuracy against p50 latency (log x), Pareto front connected, marker area by file size."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    ok = ok_rows(report.rows)
    if not ok:
        _nothing_to_plot(ax)
        return fig
    acc = np.array([100 * r.accuracy for r in ok])
    unit, size = latency_unit(r.p50 for r in ok)
    p50 = np.array([r.p50 / size for r in ok])
    sizes = np.array([r.size_bytes or 0 for r in ok], dtype=float)
    area = 40 + 460 * sizes / max(sizes.max(), 1)
    front = pareto_front(acc, p50)
    ax.scatter(
        p50[~front], acc[~front], s=area[~front], alpha=0.5, color="tab:gray", label="dominated"
    )
    ax.scatter(
        p50[front],
        acc[front],
        s=area[front],
        alpha=0.8,
        color="tab:blue",
        edgecolor="black",
        label="Pareto front",
    )
    order = np.argsort(p50[front])
    ax.plot(p50[front][order], acc[front][order], color="tab:blue", lw=1.2, zorder=0)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter("{x:g}")
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set(
        xlabel=f"p50 latency per call ({unit}, log scale)",
        ylabel="accuracy (%)",
        title="Accuracy vs latency (marker area ∝ file size)",
    )
    ax.margins(x=0.3, y=0.2)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", markerscale=0.5, fontsize=8)
    names = [report.label(r) + (f" {STAR}" if report.is_recommended(r) else "") for r in ok]
    _place_labels(fig, ax, list(zip(p50, acc, names, strict=True)))
    return fig


def _place_labels(fig, ax, points: list[tuple[float, float, str]]) -> None:
    """Labels each point, moving a label up or down (with a leader line) until it overlaps no
    earlier one: variants of one format often share an accuracy and nearly share a latency."""
    ax.autoscale_view()  # fix the limits first, so the label extents measured below are final
    renderer = fig.canvas.get_renderer()
    placed = []
    for x, y, text in points:
        label = ax.annotate(
            literal_text(text), (x, y), xytext=(8, 3), textcoords="offset points", fontsize=8
        )
        for dy in (3, -13, 15, -25, 27, -37, 39, -49, 51):  # the last one stays, free or not
            label.xyann = (8, dy)
            extent = label.get_window_extent(renderer)
            if not any(extent.overlaps(other) for other in placed):
                break
        placed.append(extent)
        if abs(dy) > 13:
            leader = {"arrowstyle": "-", "color": "gray", "lw": 0.5, "shrinkA": 0}
            ax.annotate(
                "", (x, y), xytext=(8, dy + 4), textcoords="offset points", arrowprops=leader
            )


def size_figure(rows):
    """File size per artifact, horizontal bars, largest on top."""
    plt = pyplot()
    sizes = {r.artifact: r.size_bytes for r in rows if r.size_bytes is not None}
    sized = sorted(sizes.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(sized) + 1.5))
    if not sized:
        _nothing_to_plot(ax, "no sizes")
        return fig
    names = [literal_text(name) for name, _ in sized]
    values = [size / 1e6 for _, size in sized]
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[human_size(size) for _, size in sized], padding=3, fontsize=8)
    ax.set(xlabel="file size (MB)", title="Artifact size")
    ax.margins(x=0.15)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def _latency_box(ax, y: int, q: dict[str, float], unit: str) -> None:
    """One row's box p25-p75, p50 line and whiskers p1-p99, at height `y`."""
    ax.hlines(y, q["p1"], q["p99"], color="black", lw=1)
    ax.vlines([q["p1"], q["p99"]], y - 0.15, y + 0.15, color="black", lw=1)
    ax.barh(
        y,
        q["p75"] - q["p25"],
        left=q["p25"],
        height=0.5,
        color="tab:blue",
        alpha=0.6,
        edgecolor="black",
    )
    ax.vlines(q["p50"], y - 0.25, y + 0.25, color="tab:orange", lw=2.5)
    ax.annotate(
        f"p50 {three_digits(q['p50'])} {unit}",
        (q["p99"], y),
        xytext=(6, 0),
        textcoords="offset points",
        va="center",
        fontsize=8,
    )


def latency_distribution_figure(report: Report):
    """Per-call latency per row, fastest on top: box p25-p75, p50 line, whiskers p1-p99.

    Drawn from each row's stored `latency_quantiles_ms`, so a re-rendered report draws the same
    plot; by hand, so the log-x box plot looks the same on every matplotlib.
    """
    plt = pyplot()
    rows = [r for r in sorted_rows(report.rows) if r.ok and r.latency_quantiles_ms][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    if not rows:  # report.json files older than latency_quantiles_ms have none to draw
        _nothing_to_plot(ax, "no latency quantiles in report.json")
        return fig
    unit, size = latency_unit(r.latency_quantiles_ms["p1"] for r in rows)
    for y, row in enumerate(rows):  # slowest at y=0 (bottom)
        _latency_box(ax, y, {k: v / size for k, v in row.latency_quantiles_ms.items()}, unit)
    ax.set_yticks(range(len(rows)), [literal_text(report.label(r)) for r in rows])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter("{x:g}")
    ax.margins(x=0.2)
    ax.set(
        xlabel=f"latency per call ({unit}, log scale)",
        title="Latency distribution (box p25–p75, orange p50, whiskers p1–p99)",
    )
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return fig


def class_selection(report: Report) -> list[int]:
    """The classes the per-class plot shows: all up to HEAT_MAP_CLASSES, else the ones that lost
    most against the reference in any row (then the least accurate), so 1,000 classes stay
    readable."""
    classes = len(report.class_names)
    ok = [r for r in ok_rows(report.rows) if r.per_class_accuracy is not None]
    if classes <= HEAT_MAP_CLASSES or not ok:
        return list(range(min(classes, HEAT_MAP_CLASSES)))
    values = np.array([r.per_class_accuracy for r in ok], dtype=float)
    reference = next((r for r in ok if r.artifact == report.reference), ok[0])
    drop = np.nan_to_num(np.array(reference.per_class_accuracy, dtype=float) - values, nan=0.0)
    lowest = np.nan_to_num(np.nanmin(values, axis=0), nan=1.0)
    order = np.lexsort((lowest, -drop.max(axis=0)))  # the last key sorts first
    return sorted(order[:HEAT_MAP_CLASSES].tolist(), key=lambda c: lowest[c])


def per_class_accuracy_figure(report: Report):
    """Heat map of accuracy per class (%), rows in table order, each cell labelled; beyond
    HEAT_MAP_CLASSES classes, only those `class_selection` picks."""
    plt = pyplot()
    selected = class_selection(report)
    names = [class_name(report, c) for c in selected]
    ok = [r for r in ok_rows(report.rows) if r.per_class_accuracy is not None]
    fig, ax = plt.subplots(figsize=(0.8 * len(selected) + 4, 0.45 * len(ok) + 2.2))
    if not ok:
        _nothing_to_plot(ax)
        return fig
    values = 100 * np.array([r.per_class_accuracy for r in ok], dtype=float)[:, selected]
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    middle = np.nanmean([np.nanmin(values), np.nanmax(values)])
    for (i, j), value in np.ndenumerate(values):
        colour = "black" if value > middle else "white"
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color=colour)
    ticks = [literal_text(short(n, 18)) for n in names]
    ax.set_xticks(range(len(names)), ticks, rotation=30, ha="right")
    ax.set_yticks(range(len(ok)), [literal_text(report.label(r)) for r in ok])
    classes = len(report.class_names)
    ax.set_title(
        "Accuracy per class (%)"
        if len(selected) == classes
        else f"Accuracy (%) of the {len(selected)} of {classes:,} classes that lost most "
        "against the reference"
    )
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    return fig
