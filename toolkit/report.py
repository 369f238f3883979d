"""A compare result as people read it: the terminal table, report files and plots.

Every rendering reads one `toolkit.results.Report` (report.json is its `to_json()`); per-call
latencies are plotted but not stored. Nothing here prints or imports a runtime; matplotlib loads
on first plot.

report.csv has one row per (artifact, runtime), columns in this order (an empty cell is None):
    artifact, format, variant, runtime, status, error, accuracy, agreement, flipped, max_abs_diff,
    latency_p50_ms, latency_p90_ms, latency_p99_ms, latency_mean_ms, latency_std_ms,
    latency_min_ms, throughput_ips, load_ms, size_bytes, peak_rss_mb, rmse, snr_db, cosine,
    [delta_accuracy_pts, delta_p50_pct: only when the rows carry them, i.e. a baseline was given],
    acc_0 ... acc_<n-1>: per-class accuracy, indexed like `class_names` in report.json.
Accuracies are fractions (0.8774), as in report.json; the table, Markdown and HTML show percent.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rich import box
from rich.table import Table
from rich.text import Text

from toolkit.artifacts import write_json, write_text
from toolkit.figures import pyplot, save_figure
from toolkit.metrics import pareto_front
from toolkit.results import DELTA_KEYS, Report, Row

LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min")
CSV_COLUMNS = (
    ["artifact", "format", "variant", "runtime", "status", "error"]
    + ["accuracy", "agreement", "flipped", "max_abs_diff"]
    + [f"latency_{key}_ms" for key in LATENCY_KEYS]
    + ["throughput_ips", "load_ms", "size_bytes", "peak_rss_mb", "rmse", "snr_db", "cosine"]
)
PLOTS = {  # file name -> caption, in the order the HTML page shows them
    "accuracy_vs_latency.png": "Accuracy vs p50 latency; the Pareto front is blue and connected",
    "latency_distribution.png": "Latency per call",
    "size.png": "File size",
    "per_class_accuracy.png": "Accuracy per class (%)",
}
STAR = "★"
FAILED = "✗"


# --- cells shared by the terminal table, Markdown and HTML ---------------------------------------


class _Column(NamedTuple):
    header: str
    cell: Callable[[Row], str]
    numeric: bool = True


def _num(value, spec: str, scale: float = 1) -> str:
    return "–" if value is None else spec.format(value * scale)


def _latency(row: Row, key: str) -> float | None:
    return None if row.latency_ms is None else row.latency_ms[key]


def _ms(value: float | None) -> str:
    """Three significant digits: edge runtimes answer in microseconds, TF in tenths of a ms."""
    return "–" if value is None else f"{value:#.3g}" if value < 100 else f"{value:.0f}"


def human_size(size: int | None) -> str:
    """Bytes as B/KB/MB/GB (powers of 1000), e.g. 407000 -> "407.0 KB"."""
    if size is None:
        return "–"
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _mark(report: Report, row: Row) -> str:
    if not row.ok:
        return FAILED
    return STAR if report.is_recommended(row) else ""


def _columns(report: Report) -> list[_Column]:
    columns = [
        _Column("", lambda r: _mark(report, r), numeric=False),
        _Column("artifact", lambda r: r.artifact, numeric=False),
        _Column("runtime", lambda r: r.runtime, numeric=False),
        _Column("acc %", lambda r: _num(r.accuracy, "{:.2f}", 100)),
        _Column("agree %", lambda r: _num(r.agreement, "{:.2f}", 100)),
        _Column("flipped", lambda r: _num(r.flipped, "{:d}")),
        _Column("max|diff|", lambda r: _num(r.max_abs_diff, "{:.1e}")),
        _Column("SNR dB", lambda r: _num(r.snr_db, "{:.1f}")),
        _Column("p50 ms", lambda r: _ms(_latency(r, "p50"))),
        _Column("p99 ms", lambda r: _ms(_latency(r, "p99"))),
        _Column("img/s", lambda r: _num(r.throughput_ips, "{:,.0f}")),
        _Column("load ms", lambda r: _num(r.load_ms, "{:.1f}")),
        _Column("size", lambda r: human_size(r.size_bytes)),
        _Column("RSS MB", lambda r: _num(r.peak_rss_mb, "{:.1f}")),
    ]
    if report.baseline is not None:
        columns.append(_Column("Δacc pt", lambda r: _num(r.delta_accuracy_pts, "{:+.2f}")))
        columns.append(_Column("Δp50 %", lambda r: _num(r.delta_p50_pct, "{:+.1f}")))
    return columns


def _sorted_rows(rows) -> list[Row]:
    """Fastest first by p50; rows that did not run (no latency) last."""

    def key(row: Row):
        failed = not row.ok or row.p50 is None
        return (failed, 0.0 if failed else row.p50, row.artifact, row.runtime)

    return sorted(rows, key=key)


def _failed(report: Report) -> list[Row]:
    return [row for row in _sorted_rows(report.rows) if not row.ok]


def _reason(row: Row) -> str:
    return f"{row.status}: {row.error or 'no reason given'}"


def _title(report: Report) -> str:
    return (
        f"{len(report.rows)} rows · threads {report.threads} · "
        f"reference {report.reference} · {report.created}"
    )


def _recommended_label(report: Report) -> str | None:
    row = next((r for r in report.rows if report.is_recommended(r)), None)
    return None if row is None else report.label(row)


def report_table(report: Report) -> Table:
    """The terminal table: one row per (artifact, runtime), fastest first, the recommended one
    starred.

    Failed rows come last; their reasons go in the caption, where a long one can wrap without
    squeezing the number columns.
    """
    recommended = _recommended_label(report)
    columns = _columns(report)
    caption = [f"{STAR} recommended: {recommended}"] if recommended else []
    caption += [f"{FAILED} {report.label(row)}: {_reason(row)}" for row in _failed(report)]
    table = Table(
        title=Text(_title(report)),
        caption=Text("\n".join(caption)) if caption else None,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
    )
    for column in columns:
        table.add_column(column.header, justify="right" if column.numeric else "left", no_wrap=True)
    for row in _sorted_rows(report.rows):
        style = "red" if not row.ok else "bold" if report.is_recommended(row) else None
        table.add_row(*(Text(column.cell(row)) for column in columns), style=style)
    return table


def report_markdown(report: Report) -> str:
    """report.md: the same table as the terminal, plus failures with their reasons."""
    columns = _columns(report)

    def line(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    lines = ["# Compare report", "", _title(report), ""]
    if recommended := _recommended_label(report):
        lines += [f"Recommended: **{recommended}** ({STAR})", ""]
    lines.append(line(c.header for c in columns))
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|")
    lines += [line(c.cell(row) for c in columns) for row in _sorted_rows(report.rows)]
    if failed := _failed(report):
        lines += ["", "## Not measured", ""]
        lines += [f"- `{report.label(row)}`: {_reason(row)}" for row in failed]
    return "\n".join(lines) + "\n"


def report_csv(report: Report) -> str:
    """report.csv: one row per (artifact, runtime) in report order; layout in the module
    docstring."""
    data = report.to_json()
    deltas = list(DELTA_KEYS) if report.baseline is not None else []
    header = CSV_COLUMNS + deltas + [f"acc_{i}" for i in range(len(report.class_names))]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in data["rows"]:
        flat = dict(row)
        for key in LATENCY_KEYS:
            flat[f"latency_{key}_ms"] = (
                None if row["latency_ms"] is None else row["latency_ms"][key]
            )
        for i, value in enumerate(row["per_class_accuracy"] or []):
            flat[f"acc_{i}"] = value
        writer.writerow({key: "" if flat.get(key) is None else flat[key] for key in header})
    return buffer.getvalue()


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1f24;
       max-width: 1200px; margin: 2em auto; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .meta { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3em 0.7em; border-bottom: 1px solid #d0d7de; text-align: left;
         white-space: nowrap; }
th { background: #f6f8fa; } td.num, th.num { text-align: right; }
tr.recommended td { font-weight: 600; background: #fff8c5; }
tr.failed td { color: #cf222e; } .wide { overflow-x: auto; }
figure { margin: 0 0 2em; } img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 0.9em; }
"""


def report_html(report: Report, images: dict[str, bytes]) -> str:
    """report.html: one self-contained page (inline CSS, PNGs as data URIs); `images` maps a
    file name from PLOTS to its PNG bytes."""
    esc = html.escape
    columns = _columns(report)
    recommended = _recommended_label(report)

    def cls(column: _Column) -> str:
        return ' class="num"' if column.numeric else ""

    head = "".join(f"<th{cls(c)}>{esc(c.header)}</th>" for c in columns)
    body = []
    for row in _sorted_rows(report.rows):
        kind = ""
        if not row.ok:
            kind = ' class="failed"'
        elif report.is_recommended(row):
            kind = ' class="recommended"'
        cells = "".join(f"<td{cls(c)}>{esc(c.cell(row))}</td>" for c in columns)
        body.append(f"<tr{kind}>{cells}</tr>")
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Compare report · {esc(report.created)}</title><style>{_CSS}</style></head>",
        "<body><h1>Compare report</h1>",
        f'<p class="meta">{esc(_title(report))}</p>',
        f"<p>Recommended: <strong>{esc(recommended)}</strong> {STAR} "
        "(lowest p50 latency within the accuracy budget of the reference)</p>"
        if recommended
        else "<p>No artifact is recommended: none is ok and close enough to the reference.</p>",
        f'<h2>Results</h2><div class="wide"><table><thead><tr>{head}</tr></thead><tbody>',
        *body,
        "</tbody></table></div>",
    ]
    if failed := _failed(report):
        parts.append("<h2>Not measured</h2><ul>")
        parts += [
            f"<li><code>{esc(report.label(r))}</code>: {esc(_reason(r))}</li>" for r in failed
        ]
        parts.append("</ul>")
    parts.append("<h2>Plots</h2>")
    for name, caption in PLOTS.items():
        if name in images:
            data = base64.b64encode(images[name]).decode("ascii")
            parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}">'
                f"<figcaption>{esc(caption)}</figcaption></figure>"
            )
    parts.append("<h2>Environment</h2><table><tbody>")
    for key, value in report.environment.items():
        if isinstance(value, dict):
            parts += [
                f"<tr><th>{esc(key)}: {esc(k)}</th><td>{esc(str(v))}</td></tr>"
                for k, v in value.items()
            ]
        else:
            parts.append(f"<tr><th>{esc(key)}</th><td>{esc(str(value))}</td></tr>")
    parts.append("</tbody></table></body></html>\n")
    return "\n".join(parts)


# --- plots --------------------------------------------------------------------------------------


def _ok_rows(rows) -> list[Row]:
    return [r for r in _sorted_rows(rows) if r.ok and r.accuracy is not None]


def _nothing_to_plot(ax, message: str = "no successful artifacts") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def plot_accuracy_vs_latency(report: Report, path: Path) -> Path:
    """Accuracy against p50 latency (log x), Pareto front connected, marker area by file size."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    ok = _ok_rows(report.rows)
    if not ok:
        _nothing_to_plot(ax)
        return save_figure(fig, path)
    acc = np.array([100 * r.accuracy for r in ok])
    p50 = np.array([r.p50 for r in ok])
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
        xlabel="p50 latency per call (ms, log scale)",
        ylabel="accuracy (%)",
        title="Accuracy vs latency (marker area ∝ file size)",
    )
    ax.margins(x=0.3, y=0.2)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", markerscale=0.5, fontsize=8)
    names = [report.label(r) + (f" {STAR}" if report.is_recommended(r) else "") for r in ok]
    _place_labels(fig, ax, list(zip(p50, acc, names, strict=True)))
    return save_figure(fig, path)


def _place_labels(fig, ax, points: list[tuple[float, float, str]]) -> None:
    """Labels each point, moving a label up or down (with a leader line) until it overlaps no
    earlier one: variants of one format often share an accuracy and nearly share a latency."""
    ax.autoscale_view()  # fix the limits first, so the label extents measured below are final
    renderer = fig.canvas.get_renderer()
    placed = []
    for x, y, text in points:
        label = ax.annotate(text, (x, y), xytext=(8, 3), textcoords="offset points", fontsize=8)
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


def plot_size(rows, path: Path) -> Path:
    """File size per artifact, horizontal bars, largest on top."""
    plt = pyplot()
    sizes = {r.artifact: r.size_bytes for r in rows if r.size_bytes is not None}
    sized = sorted(sizes.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(sized) + 1.5))
    if not sized:
        _nothing_to_plot(ax, "no sizes")
        return save_figure(fig, path)
    names = [name for name, _ in sized]
    values = [size / 1e6 for _, size in sized]
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[human_size(size) for _, size in sized], padding=3, fontsize=8)
    ax.set(xlabel="file size (MB)", title="Artifact size")
    ax.margins(x=0.15)
    ax.grid(True, axis="x", alpha=0.3)
    return save_figure(fig, path)


def plot_latency_distribution(latency_samples: dict[str, np.ndarray], path: Path) -> Path:
    """Per-call latency per artifact, fastest on top: box p25-p75, p50 line, whiskers p1-p99.

    Drawn from percentiles by hand so the log-x box plot looks the same on every matplotlib.
    """
    plt = pyplot()
    samples = {n: np.asarray(s, dtype=float) for n, s in latency_samples.items() if len(s)}
    names = sorted(samples, key=lambda n: (-np.median(samples[n]), n))  # slowest at y=0 (bottom)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(names) + 1.5))
    if not names:
        _nothing_to_plot(ax, "no latency samples")
        return save_figure(fig, path)
    for y, name in enumerate(names):
        p1, p25, p50, p75, p99 = np.percentile(samples[name], [1, 25, 50, 75, 99])
        ax.hlines(y, p1, p99, color="black", lw=1)
        ax.vlines([p1, p99], y - 0.15, y + 0.15, color="black", lw=1)
        ax.barh(y, p75 - p25, left=p25, height=0.5, color="tab:blue", alpha=0.6, edgecolor="black")
        ax.vlines(p50, y - 0.25, y + 0.25, color="tab:orange", lw=2.5)
        ax.annotate(
            f"p50 {p50:.3g} ms",
            (p99, y),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter("{x:g}")
    ax.margins(x=0.2)
    ax.set(
        xlabel="latency per call (ms, log scale)",
        title="Latency distribution (box p25–p75, orange p50, whiskers p1–p99)",
    )
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return save_figure(fig, path)


def plot_per_class_accuracy(report: Report, path: Path) -> Path:
    """Heat map of accuracy per class (%), artifacts by rows in table order, each cell labelled."""
    plt = pyplot()
    class_names = report.class_names
    ok = [r for r in _ok_rows(report.rows) if r.per_class_accuracy is not None]
    fig, ax = plt.subplots(figsize=(1.0 * len(class_names) + 3, 0.45 * len(ok) + 2))
    if not ok:
        _nothing_to_plot(ax)
        return save_figure(fig, path)
    values = 100 * np.array([r.per_class_accuracy for r in ok], dtype=float)
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    middle = np.nanmean([np.nanmin(values), np.nanmax(values)])
    for (i, j), value in np.ndenumerate(values):
        ax.text(
            j,
            i,
            f"{value:.1f}",
            ha="center",
            va="center",
            fontsize=8,
            color="black" if value > middle else "white",
        )
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(ok)), [report.label(r) for r in ok])
    ax.set_title("Accuracy per class (%)")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    return save_figure(fig, path)


def write_reports(report: Report, folder: Path) -> list[Path]:
    """Writes report.json/.csv/.md, the four PNG plots and report.html into `folder`, each file
    atomically; returns their paths (report.html last, since it embeds the plots)."""
    samples = {
        report.label(row): report.latency_samples[row.key]
        for row in report.rows
        if row.key in report.latency_samples
    }
    paths = [
        write_json(folder / "report.json", report.to_json()),
        write_text(folder / "report.csv", report_csv(report)),
        write_text(folder / "report.md", report_markdown(report)),
        plot_accuracy_vs_latency(report, folder / "accuracy_vs_latency.png"),
        plot_size(report.rows, folder / "size.png"),
        plot_latency_distribution(samples, folder / "latency_distribution.png"),
        plot_per_class_accuracy(report, folder / "per_class_accuracy.png"),
    ]
    images = {p.name: p.read_bytes() for p in paths if p.suffix == ".png"}
    paths.append(write_text(folder / "report.html", report_html(report, images)))
    return paths
