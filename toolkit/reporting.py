"""A compare result as people read it: the terminal table, report files, plots and flip galleries.

Every rendering reads one `toolkit.results.Report` (report.json is its `to_json()`), so
`toolkit report` re-renders from a stored report.json exactly what compare wrote; only the
galleries need the inputs. Nothing here prints or imports a runtime; matplotlib loads on first
plot.

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
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from toolkit.artifacts import Staging, write_text
from toolkit.figures import FigureProcess, pyplot, save_figure, write_png
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
    "per_class_accuracy.png": "Accuracy per class (%); beyond 20 classes, those that lost most",
}
STAR = "★"
FAILED = "✗"


# --- cells shared by the terminal table, Markdown and HTML ---------------------------------------

LATENCY_UNITS = (("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6))  # name, its size in ms; largest first


class _Column(NamedTuple):
    header: str
    cell: Callable[[Row], str]
    numeric: bool = True
    value: Callable[[Row], float | None] = lambda row: None  # what the HTML table sorts by
    drop_rank: int = 0  # narrow terminals hide the highest ranks first; 0 is never hidden


def _num(value, spec: str, scale: float = 1) -> str:
    return "–" if value is None else spec.format(value * scale)


def _latency(row: Row, key: str) -> float | None:
    return None if row.latency_ms is None else row.latency_ms[key]


def latency_unit(values_ms) -> tuple[str, float]:
    """One unit for a column of latencies (ms): the largest in which its smallest value is at least
    1, so no figure reads 0.00134; (name, size in ms)."""
    present = [v for v in values_ms if v is not None and v > 0]
    smallest = min(present, default=1.0)
    return next((u for u in LATENCY_UNITS if smallest >= u[1]), LATENCY_UNITS[-1])


def three_digits(value: float | None) -> str:
    """Three significant digits, whole numbers from 100 up (1.34, 13.4, 134, 1,340)."""
    if value is None:
        return "–"
    text = f"{value:#.3g}"
    return f"{value:,.0f}" if "e" in text or text.endswith(".") else text


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


def _latency_text(value_ms: float | None, unit_size: float) -> str:
    return three_digits(None if value_ms is None else value_ms / unit_size)


def _latency_column(report: Report, key: str, drop_rank: int) -> _Column:
    unit, size = latency_unit(_latency(row, key) for row in report.rows)
    return _Column(
        f"{key} {unit}",
        lambda r: _latency_text(_latency(r, key), size),
        value=lambda r: _latency(r, key),
        drop_rank=drop_rank,
    )


def _columns(report: Report) -> list[_Column]:
    """Every column, most important first; `drop_rank` orders what a narrow terminal hides."""

    def numeric(header, attribute, spec, scale=1, drop_rank=0):
        return _Column(
            header,
            lambda r: _num(getattr(r, attribute), spec, scale),
            value=lambda r: getattr(r, attribute),
            drop_rank=drop_rank,
        )

    deltas = report.baseline is not None  # each beside the figure it changes
    return [
        _Column("", lambda r: _mark(report, r), numeric=False),
        _Column("artifact", lambda r: r.artifact, numeric=False),
        _Column("runtime", lambda r: r.runtime, numeric=False),
        numeric("acc %", "accuracy", "{:.2f}", 100),
        *([numeric("Δacc pt", "delta_accuracy_pts", "{:+.2f}", drop_rank=2)] if deltas else []),
        numeric("agree %", "agreement", "{:.2f}", 100, drop_rank=6),
        numeric("flipped", "flipped", "{:d}", drop_rank=4),
        numeric("max|diff|", "max_abs_diff", "{:.1e}", drop_rank=10),
        numeric("SNR dB", "snr_db", "{:.1f}", drop_rank=9),
        _latency_column(report, "p50", drop_rank=0),
        *([numeric("Δp50 %", "delta_p50_pct", "{:+.1f}", drop_rank=1)] if deltas else []),
        _latency_column(report, "p99", drop_rank=5),
        numeric("img/s", "throughput_ips", "{:,.0f}", drop_rank=8),
        numeric("load ms", "load_ms", "{:.1f}", drop_rank=11),
        _Column(
            "size", lambda r: human_size(r.size_bytes), value=lambda r: r.size_bytes, drop_rank=3
        ),
        numeric("RSS MB", "peak_rss_mb", "{:.1f}", drop_rank=12),
        *_target_columns(report),
    ]


def _gpu_delegate(row: Row) -> str:
    verdict = row.compatibility.get("gpu_delegate")
    if not verdict:
        return "–"
    return (
        "whole graph" if verdict["whole_graph"] else "no: " + ", ".join(verdict["unsupported_ops"])
    )


def _target_columns(report: Report) -> list[_Column]:
    """Microcontroller RAM (TFLM's arena) and phone-GPU fit, when some row has them."""
    columns = []
    if any("arena_bytes" in r.extras for r in report.rows):
        columns.append(
            _Column(
                "arena",
                lambda r: human_size(r.extras.get("arena_bytes")),
                value=lambda r: r.extras.get("arena_bytes"),
                drop_rank=13,
            )
        )
    if any(r.compatibility.get("gpu_delegate") for r in report.rows):
        columns.append(_Column("GPU delegate", _gpu_delegate, numeric=False, drop_rank=14))
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


def _table(report: Report, columns: list[_Column], notes: list[str]) -> Table:
    caption = [f"{FAILED} {report.label(row)}: {_reason(row)}" for row in _failed(report)]
    if recommended := _recommended_label(report):
        caption.insert(0, f"{STAR} recommended: {recommended}")
    caption += notes
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


def report_table(report: Report, width: int | None = None) -> Table:
    """The terminal table: one row per (artifact, runtime), fastest first, the recommended one
    starred; failed rows last, their reasons in the caption, where a long one can wrap.

    With a `width`, the least important columns are hidden until the table fits (the caption
    names them): a figure is shown whole or not at all.
    """
    columns = _columns(report)
    hidden: list[str] = []
    while True:
        notes = [f"hidden at this width: {', '.join(hidden)} (see report.md or report.html)"]
        table = _table(report, columns, notes if hidden else [])
        droppable = [c for c in columns if c.drop_rank]
        if width is None or not droppable or _width(table) <= width:
            return table
        least_important = max(droppable, key=lambda c: c.drop_rank)
        columns.remove(least_important)
        hidden.insert(0, least_important.header)


def _width(table: Table) -> int:
    """The width the table's columns need (the title and caption wrap; they do not count)."""
    console = Console(file=io.StringIO(), width=10_000)
    return console.measure(table).maximum


def report_markdown(report: Report) -> str:
    """report.md: the same table as the terminal, plus failures with their reasons."""
    columns = _columns(report)

    def line(cells) -> str:
        return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    lines = ["# Compare report", "", _title(report), ""]
    if failures := report.gate.get("failures"):
        lines += [f"**Gate failed** ({len(failures)}):", "", *(f"- {f}" for f in failures), ""]
    elif _gate_limits(report):
        lines += [f"**Gate passed**: every row is {' and '.join(_gate_limits(report))}.", ""]
    if recommended := _recommended_label(report):
        lines += [f"Recommended: **{recommended}** ({STAR})", ""]
    lines.append(line(c.header for c in columns))
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|")
    lines += [line(c.cell(row) for c in columns) for row in _sorted_rows(report.rows)]
    if failed := _failed(report):
        lines += ["", "## Not measured", ""]
        lines += [f"- `{report.label(row)}`: {_reason(row)}" for row in failed]
    if flipped := [row for row in _sorted_rows(report.rows) if row.ok and row.flipped]:
        lines += ["", "## What flipped", ""]
        for row in flipped:
            changes = ", ".join(
                f"{_class_name(report, c['true'])} → {_class_name(report, c['predicted'])} "
                f"{c['artifact'] - c['reference']:+d}"
                for c in (row.confusion_changes or [])[:5]
            )
            lines.append(
                f"- `{report.label(row)}`: {row.flipped} flipped"
                + (f"; confusion cells that changed most: {changes}" if changes else "")
            )
            if row.top_flips:
                lines.append(f"  ![{report.label(row)} flips]({gallery_name(report, row)})")
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
       max-width: 1400px; margin: 2em auto; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } .meta, .hint { color: #57606a; margin-top: 0; }
.hint { font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3em 0.5em; border-bottom: 1px solid #d0d7de; text-align: left;
         white-space: nowrap; }
#results { font-size: 13.5px; } #results td, #results th { padding: 0.3em 0.45em; }
th { background: #f6f8fa; } td.num, th.num { text-align: right; }
table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort=ascending]::after { content: " ▲"; } th[aria-sort=descending]::after { content: " ▼"; }
tr.recommended td { font-weight: 600; background: #fff8c5; }
tr.failed td { color: #cf222e; } .wide { overflow-x: auto; }
td.better { color: #1a7f37; } td.worse { color: #cf222e; }
tr td.regression { background: #ffebe9; color: #a40e26; font-weight: 600; }
.badge { font-size: 0.75em; padding: 0.05em 0.45em; border-radius: 1em; margin-left: 0.4em;
         background: #ddf4ff; color: #0969da; font-weight: 600; }
.verdict { padding: 0.6em 1em; border-radius: 6px; margin: 1em 0; border: 1px solid; }
.verdict.pass { background: #dafbe1; border-color: #4ac26b; }
.verdict.fail { background: #ffebe9; border-color: #ff8182; }
.verdict.none { background: #f6f8fa; border-color: #d0d7de; }
.verdict ul { margin: 0.3em 0 0; }
details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: 600; }
figure { margin: 0.5em 0 1.5em; } img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption { color: #57606a; font-size: 0.9em; }
@page { size: A4; margin: 12mm; }
@media print {
  body { max-width: none; margin: 0; padding: 0; font-size: 10px; }
  .wide { overflow: visible; } table, #results { font-size: 8px; }
  th, td, #results th, #results td { padding: 0.15em 0.3em; } th { white-space: normal; }
  figure, tr, .verdict { break-inside: avoid; } .hint { display: none; }
}
"""
# A few lines that sort the results table by the clicked header (numbers by their raw value,
# blanks last) and open every collapsed section before printing.
_SCRIPT = """
for (const table of document.querySelectorAll("table.sortable")) {
  const heads = [...table.tHead.rows[0].cells];
  heads.forEach((th, i) => th.addEventListener("click", () => {
    const ascending = th.getAttribute("aria-sort") !== "ascending";
    heads.forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    const numeric = th.classList.contains("num");
    const key = (row) => {
      const v = row.cells[i].dataset.v;
      return v === "" ? null : numeric ? Number(v) : v;
    };
    const rows = [...table.tBodies[0].rows].sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || y === null) return (x === null) - (y === null);
      const order = numeric ? x - y : x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    table.tBodies[0].append(...rows);
  }));
}
addEventListener("beforeprint", () => {
  for (const d of document.querySelectorAll("details")) d.open = true;
});
"""
# Nothing on the page may reach the network: only inline styles, inline scripts, data: images.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
esc = html.escape


def _png(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img src="data:image/png;base64,{encoded}" alt="{esc(alt)}">'


def _class_name(report: Report, index: int | None) -> str:
    if index is None:
        return "–"
    names = report.class_names
    return names[index] if 0 <= index < len(names) else str(index)


def _gate_cells(report: Report, row: Row) -> set[str]:
    """Headers of the row's cells past a gate: the accuracy drop against the reference, the p50
    growth against the baseline (the same rules as `evaluate.gate_failures`)."""
    max_drop = report.gate.get("max_accuracy_drop")
    max_growth = report.gate.get("max_latency_regression")
    reference = report.reference_row.accuracy
    cells = set()
    if None not in (max_drop, row.accuracy, reference) and 100 * (reference - row.accuracy) > (
        max_drop
    ):
        cells.add("acc %")
    if None not in (max_growth, row.delta_p50_pct) and row.delta_p50_pct > max_growth:
        cells.add("Δp50 %")
    return cells


def _delta_class(column: _Column, row: Row) -> str:
    """Green when a change is an improvement, red when it is worse (higher latency is worse)."""
    value = column.value(row)
    if column.header not in ("Δacc pt", "Δp50 %") or not value:
        return ""
    better = value > 0 if column.header == "Δacc pt" else value < 0
    return "better" if better else "worse"


def _results_table(report: Report) -> str:
    columns = _columns(report)
    new = {tuple(key) for key in report.baseline_new or []}
    head = "".join(
        f'<th{" class=num" if c.numeric else ""} title="click to sort">{esc(c.header)}</th>'
        for c in columns
    )
    body = []
    for row in _sorted_rows(report.rows):
        kind = "failed" if not row.ok else "recommended" if report.is_recommended(row) else ""
        regressions = _gate_cells(report, row)
        cells = []
        for column in columns:
            classes = ["num"] if column.numeric else []
            classes += [_delta_class(column, row)]
            classes += ["regression"] if column.header in regressions else []
            value = column.value(row) if column.numeric else column.cell(row)
            text = esc(column.cell(row))
            if column.header == "artifact" and row.key in new:
                text += '<span class="badge">new</span>'
            attribute = f' class="{" ".join(c for c in classes if c)}"' if any(classes) else ""
            sort_value = "" if value is None else esc(str(value))
            cells.append(f'<td{attribute} data-v="{sort_value}">{text}</td>')
        body.append(f'<tr class="{kind}">{"".join(cells)}</tr>')
    return (
        '<div class="wide"><table class="sortable" id="results">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _gate_limits(report: Report) -> list[str]:
    """What the gate allows, in words; empty when no gate was set."""
    gate, limits = report.gate, []
    if gate.get("max_accuracy_drop") is not None:
        limits.append(f"at most {gate['max_accuracy_drop']:g} pt below the reference's accuracy")
    if gate.get("max_latency_regression") is not None:
        limits.append(f"p50 at most {gate['max_latency_regression']:g}% above the baseline's")
    return limits


def _verdict(report: Report) -> list[str]:
    """The gate's verdict, what the baseline comparison found and the recommendation."""
    limits, parts = _gate_limits(report), []
    failures = report.gate.get("failures") or []
    if failures:
        items = "".join(f"<li>{esc(f)}</li>" for f in failures)
        parts.append(
            f'<div class="verdict fail"><strong>Gate failed</strong> ({len(failures)} '
            f"{'problem' if len(failures) == 1 else 'problems'}; allowed: "
            f"{esc('; '.join(limits) or 'every row measured')})<ul>{items}</ul></div>"
        )
    elif limits:
        parts.append(
            f'<div class="verdict pass"><strong>Gate passed</strong>: every row is '
            f"{esc(' and '.join(limits))}.</div>"
        )
    if report.baseline is not None:
        new, gone = len(report.baseline_new or []), len(report.baseline_gone or [])
        parts.append(
            f'<div class="verdict none">Compared with <code>{esc(report.baseline)}</code>: '
            "Δacc in points and Δp50 in % beside each row; "
            f"{new} {'row' if new == 1 else 'rows'} new, {gone} gone.</div>"
        )
    parts += [f'<div class="verdict fail">Warning: {esc(w)}</div>' for w in report.warnings]
    if recommended := _recommended_label(report):
        parts.append(
            f"<p>Recommended: <strong>{esc(recommended)}</strong> {STAR} "
            "(lowest p50 latency within 0.5 pt of the reference's accuracy)</p>"
        )
    else:
        parts.append(
            "<p>No artifact is recommended: none is ok and close enough to the reference.</p>"
        )
    return parts


def _gone_rows(report: Report) -> list[str]:
    if not report.baseline_gone:
        return []
    unit, size = latency_unit(row["p50"] for row in report.baseline_gone)
    rows = "".join(
        f"<tr><td>{esc(row['artifact'])}</td><td>{esc(row['runtime'])}</td>"
        f'<td class="num">{_num(row["accuracy"], "{:.2f}", 100)}</td>'
        f'<td class="num">{_latency_text(row["p50"], size)}</td></tr>'
        for row in report.baseline_gone
    )
    return [
        "<h3>In the baseline, gone now</h3>",
        "<table><thead><tr><th>artifact</th><th>runtime</th>"
        f'<th class="num">acc % then</th><th class="num">p50 {unit} then</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>",
    ]


def _probability(value: float) -> str:
    return f"{100 * value:.0f}%" if 0 <= value <= 1 else f"{value:.3g}"


def _cell_change(cell: dict) -> str:
    """More hits on the diagonal or fewer off it is better; the reverse is worse."""
    more = cell["artifact"] > cell["reference"]
    return "better" if more == (cell["true"] == cell["predicted"]) else "worse"


def _confusion_changes(report: Report, row: Row) -> str:
    if not row.confusion_changes:
        return ""
    lines = "".join(
        f"<tr><td>{esc(_class_name(report, cell['true']))}</td>"
        f"<td>{esc(_class_name(report, cell['predicted']))}</td>"
        f'<td class="num">{cell["reference"]}</td><td class="num">{cell["artifact"]}</td>'
        f'<td class="num {_cell_change(cell)}">{cell["artifact"] - cell["reference"]:+d}</td></tr>'
        for cell in row.confusion_changes
    )
    return (
        "<p>Confusion cells that changed against the reference (true class → predicted class, "
        "test-set counts):</p><table><thead><tr><th>true class</th><th>predicted</th>"
        '<th class="num">reference</th><th class="num">this artifact</th>'
        f'<th class="num">change</th></tr></thead><tbody>{lines}</tbody></table>'
    )


def _flips_section(report: Report, images: dict[str, bytes]) -> list[str]:
    rows = [row for row in _sorted_rows(report.rows) if row.ok and row.flipped]
    parts = ["<h2>What flipped</h2>"]
    if not any(row.ok and row.flipped is not None for row in report.rows):
        return parts + ["<p>The outputs are not class scores: no top-1 class to flip.</p>"]
    if not rows:
        return parts + ["<p>No artifact changed a single top-1 prediction of the reference.</p>"]
    parts.append(
        '<p class="hint">Inputs whose top-1 class differs from the reference\'s, the ones the '
        "reference was surest about first; report.json lists each row's "
        "<code>flipped_indices</code>.</p>"
    )
    for row in rows:
        share = f" ({100 * row.flipped / report.test_images:.2f}%)" if report.test_images else ""
        parts.append(
            f"<details><summary>{esc(report.label(row))}: {row.flipped} flipped of "
            f"{report.test_images:,}{share}</summary>"
        )
        name = gallery_name(report, row)
        if name in images:
            caption = (
                f"The {len(row.top_flips or [])} flips the reference was surest about: "
                "true label, the reference's class and probability, this artifact's."
            )
            parts.append(
                f"<figure>{_png(images[name], caption)}<figcaption>{esc(caption)} "
                f"(<code>{esc(name)}</code>)</figcaption></figure>"
            )
        else:
            parts.append(f"<p>No gallery: <code>{esc(name)}</code> was not found.</p>")
        parts += [_confusion_changes(report, row), "</details>"]
    return parts


def _environment(report: Report) -> list[str]:
    parts = ["<details><summary>Environment</summary><table><tbody>"]
    for key, value in report.environment.items():
        pairs = value.items() if isinstance(value, dict) else [(None, value)]
        parts += [
            f"<tr><th>{esc(key if k is None else f'{key}: {k}')}</th><td>{esc(str(v))}</td></tr>"
            for k, v in pairs
        ]
    settings = ", ".join(f"{k} {v}" for k, v in report.settings.items())
    parts.append(f"<tr><th>settings</th><td>{esc(settings)}</td></tr></tbody></table></details>")
    return parts


def report_html(report: Report, images: dict[str, bytes]) -> str:
    """report.html: one self-contained page (inline CSS and script, PNGs as data URIs, a CSP that
    forbids any request); `images` maps a file name from PLOTS or `gallery_name` to its PNG."""
    parts = [
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Compare report · {esc(report.created)}</title><style>{_CSS}</style></head>",
        "<body><h1>Compare report</h1>",
        f'<p class="meta">{esc(_title(report))}</p>',
        *_verdict(report),
        "<h2>Results</h2>",
        '<p class="hint">Click a column header to sort. Latency columns each use one unit.</p>',
        _results_table(report),
        *_gone_rows(report),
    ]
    if failed := _failed(report):
        parts.append("<h2>Not measured</h2><ul>")
        parts += [
            f"<li><code>{esc(report.label(r))}</code>: {esc(_reason(r))}</li>" for r in failed
        ]
        parts.append("</ul>")
    parts += _flips_section(report, images)
    parts += _quantization_section(report, images)
    parts.append("<h2>Plots</h2>")
    for name, caption in PLOTS.items():
        if name in images:
            parts.append(
                f"<details open><summary>{esc(caption)}</summary><figure>"
                f"{_png(images[name], caption)}</figure></details>"
            )
    parts += _environment(report)
    parts.append(f"<script>{_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


# --- plots --------------------------------------------------------------------------------------


def _ok_rows(rows) -> list[Row]:
    return [r for r in _sorted_rows(rows) if r.ok and r.accuracy is not None]


def _nothing_to_plot(ax, message: str = "no successful artifacts") -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def accuracy_vs_latency_figure(report: Report):
    """Accuracy against p50 latency (log x), Pareto front connected, marker area by file size."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    ok = _ok_rows(report.rows)
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


def size_figure(rows):
    """File size per artifact, horizontal bars, largest on top."""
    plt = pyplot()
    sizes = {r.artifact: r.size_bytes for r in rows if r.size_bytes is not None}
    sized = sorted(sizes.items(), key=lambda item: item[1])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(sized) + 1.5))
    if not sized:
        _nothing_to_plot(ax, "no sizes")
        return fig
    names = [name for name, _ in sized]
    values = [size / 1e6 for _, size in sized]
    bars = ax.barh(names, values, color="tab:blue")
    ax.bar_label(bars, labels=[human_size(size) for _, size in sized], padding=3, fontsize=8)
    ax.set(xlabel="file size (MB)", title="Artifact size")
    ax.margins(x=0.15)
    ax.grid(True, axis="x", alpha=0.3)
    return fig


def latency_distribution_figure(report: Report):
    """Per-call latency per row, fastest on top: box p25-p75, p50 line, whiskers p1-p99.

    Drawn from each row's stored `latency_quantiles_ms`, so a re-rendered report draws the same
    plot; by hand, so the log-x box plot looks the same on every matplotlib.
    """
    plt = pyplot()
    rows = [r for r in _sorted_rows(report.rows) if r.ok and r.latency_quantiles_ms][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    if not rows:  # report.json files older than latency_quantiles_ms have none to draw
        _nothing_to_plot(ax, "no latency quantiles in report.json")
        return fig
    unit, size = latency_unit(r.latency_quantiles_ms["p1"] for r in rows)
    for y, row in enumerate(rows):  # slowest at y=0 (bottom)
        q = {key: value / size for key, value in row.latency_quantiles_ms.items()}
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
    ax.set_yticks(range(len(rows)), [report.label(r) for r in rows])
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter("{x:g}")
    ax.margins(x=0.2)
    ax.set(
        xlabel=f"latency per call ({unit}, log scale)",
        title="Latency distribution (box p25–p75, orange p50, whiskers p1–p99)",
    )
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return fig


HEAT_MAP_CLASSES = 20  # up to this many classes the heat map shows all; above, the worst


def class_selection(report: Report) -> list[int]:
    """The classes the per-class plot shows: all up to HEAT_MAP_CLASSES, else the ones that lost
    most against the reference in any row (then the least accurate), so 1,000 classes stay
    readable."""
    classes = len(report.class_names)
    ok = [r for r in _ok_rows(report.rows) if r.per_class_accuracy is not None]
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
    names = [_class_name(report, c) for c in selected]
    ok = [r for r in _ok_rows(report.rows) if r.per_class_accuracy is not None]
    fig, ax = plt.subplots(figsize=(0.8 * len(selected) + 4, 0.45 * len(ok) + 2.2))
    if not ok:
        _nothing_to_plot(ax)
        return fig
    values = 100 * np.array([r.per_class_accuracy for r in ok], dtype=float)[:, selected]
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    middle = np.nanmean([np.nanmin(values), np.nanmax(values)])
    for (i, j), value in np.ndenumerate(values):
        ax.text(
            j,
            i,
            f"{value:.1f}",
            ha="center",
            va="center",
            fontsize=7,
            color="black" if value > middle else "white",
        )
    ax.set_xticks(range(len(names)), [_short(n, 18) for n in names], rotation=30, ha="right")
    ax.set_yticks(range(len(ok)), [report.label(r) for r in ok])
    classes = len(report.class_names)
    ax.set_title(
        "Accuracy per class (%)"
        if len(selected) == classes
        else f"Accuracy (%) of the {len(selected)} of {classes:,} classes that lost most "
        "against the reference"
    )
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    return fig


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


GALLERY_COLUMNS = 8
GALLERY_CELL = (1.8, 2.2)  # inches per flip: the input with its three-line title above it
GALLERY_FLIP_TITLE = 0.55  # inches for a flip's three-line title (7 pt)
GALLERY_MARGIN = 0.1  # inches around a flip's input
GALLERY_SCALE_WIDTH = 0.2  # inches left of a line plot for its scale's labels (6 pt)
GALLERY_TITLE_LINE, GALLERY_TITLE_CHARS_PER_INCH = 0.2, 12  # the figure's title (9 pt), wrapped


def gallery_name(report: Report, row: Row) -> str:
    """The row's flip gallery inside the report folder: flips/<artifact>.png (plus the runtime
    when the artifact has several rows)."""
    several = report.label(row) != row.artifact
    return f"flips/{row.artifact}.{row.runtime}.png" if several else f"flips/{row.artifact}.png"


def _as_image(value: np.ndarray) -> np.ndarray | None:
    """An (H, W), (H, W, 1) or (H, W, 3) input as pixels in [0, 1]; None for other shapes."""
    array = np.asarray(value)
    image = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
        return None
    pixels = image.astype(np.float64)
    if image.dtype == np.uint8 or pixels.max(initial=0) > 1 or pixels.min(initial=0) < 0:
        low, high = (0, 255) if image.dtype == np.uint8 else (pixels.min(), pixels.max())
        pixels = (pixels - low) / (high - low if high > low else 1)
    return pixels


def _flip_title(report: Report, flip: dict) -> str:
    """Three lines: index and true label; the reference's class and probability; the artifact's
    (✓ where the class is the label)."""

    def name(index: int | None) -> str:
        return _short(_class_name(report, index), 12)

    def guess(predicted: int, probability: float) -> str:
        right = "" if flip["label"] is None else " ✓" if predicted == flip["label"] else " ✗"
        return f"{name(predicted)} {_probability(probability)}{right}"

    label = "" if flip["label"] is None else f" {name(flip['label'])}"
    return (
        f"#{flip['index']}{label}\n"
        f"ref {guess(flip['reference_class'], flip['reference_probability'])}\n"
        f"now {guess(flip['class'], flip['probability'])}"
    )


def flip_gallery_figure(report: Report, row: Row, inputs):
    """The row's `top_flips` (up to 32, the reference's surest first): each input with its label,
    the reference's class and probability and the artifact's. `inputs[i]` is item i.

    Laid out in inches on one full-figure axes: images are placed on it, titles written on it.
    An axes per flip cost 0.5 s a gallery in axis machinery alone (32 Fashion-MNIST flips);
    only inputs that are not images, drawn as lines with a scale, get axes of their own."""
    import textwrap

    from matplotlib.patches import Rectangle

    plt = pyplot()
    flips = row.top_flips
    columns = min(len(flips), GALLERY_COLUMNS)
    lines = -(-len(flips) // GALLERY_COLUMNS)
    width = GALLERY_CELL[0] * columns
    title = textwrap.fill(
        f"{report.label(row)}: {row.flipped} flipped; the {len(flips)} the reference was surest "
        "about (# index, true label / ref: reference / now: this artifact)",
        int(width * GALLERY_TITLE_CHARS_PER_INCH),
    )
    top = GALLERY_TITLE_LINE * (title.count("\n") + 1) + 0.15
    height = GALLERY_CELL[1] * lines + top
    fig = plt.figure(figsize=(width, height))
    page = fig.add_axes((0, 0, 1, 1))  # data coordinates are inches from the top left
    page.set_axis_off()
    box_width = GALLERY_CELL[0] - 2 * GALLERY_MARGIN
    box_height = GALLERY_CELL[1] - GALLERY_FLIP_TITLE - 2 * GALLERY_MARGIN
    for k, flip in enumerate(flips):
        left = (k % GALLERY_COLUMNS) * GALLERY_CELL[0] + GALLERY_MARGIN
        cell_top = top + (k // GALLERY_COLUMNS) * GALLERY_CELL[1]
        box_top = cell_top + GALLERY_FLIP_TITLE + GALLERY_MARGIN
        page.text(left, box_top - 0.04, _flip_title(report, flip), fontsize=7, va="bottom")
        value = inputs[flip["index"]]
        pixels = _as_image(value)
        if pixels is None:
            left += GALLERY_SCALE_WIDTH  # room for the scale's labels
            ax = fig.add_axes(
                (
                    left / width,
                    1 - (box_top + box_height) / height,
                    (box_width - GALLERY_SCALE_WIDTH) / width,
                    box_height / height,
                )
            )
            ax.plot(np.asarray(value).reshape(-1), lw=0.6, color="tab:blue")
            ax.set_xticks([])
            ax.tick_params(labelsize=6)
            continue
        scale = min(box_width / pixels.shape[1], box_height / pixels.shape[0])
        shown = pixels.shape[1] * scale, pixels.shape[0] * scale
        page.imshow(
            pixels,
            cmap="gray",
            vmin=0,
            vmax=1,
            interpolation="nearest",
            aspect="auto",
            extent=(left, left + shown[0], box_top + shown[1], box_top),
        )
        page.add_patch(Rectangle((left, box_top), *shown, fill=False, lw=0.8))
    page.set_xlim(0, width)
    page.set_ylim(height, 0)
    fig.suptitle(title, fontsize=9, y=1 - 0.1 / height, va="top")
    return fig


def write_reports(
    report: Report,
    folder: Path,
    inputs: np.ndarray | None = None,
    figures: FigureProcess | None = None,
) -> list[Path]:
    """Writes report.json/.csv/.md, the plots, the flip galleries and report.html, all into a
    staging folder beside `folder` that then replaces it whole; returns the final paths
    (report.html last).

    Galleries are drawn from `inputs` (the evaluation set, indexed like `top_flips`); without
    them, those already in `folder/flips/` are kept. A `figures` process takes the next figure
    whenever it is idle while this one draws the others.
    """
    report = Report.from_json(report.to_json())  # render what report.json says, as re-renders do
    with Staging(folder.parent) as staging:
        staged = staging.dir / folder.name
        paths = _write_files(report, staged, inputs, folder, figures)
        staging.commit([folder.name])
    return [folder / path.relative_to(staged) for path in paths]


def _write_files(report: Report, staged: Path, inputs, folder: Path, figures) -> list[Path]:
    paths = [
        # allow_nan=False: to_json maps non-finite figures to null, so report.json stays JSON.
        write_text(
            staged / "report.json", json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n"
        ),
        write_text(staged / "report.csv", report_csv(report)),
        write_text(staged / "report.md", report_markdown(report)),
        *_draw_figures(_figure_jobs(report, inputs), staged, figures),
    ]
    if inputs is None:  # a re-render without the data keeps the galleries drawn before
        for row in _galleries(report):
            name = gallery_name(report, row)
            if (folder / name).is_file():
                (staged / name).parent.mkdir(exist_ok=True)
                paths.append(Path(shutil.copy2(folder / name, staged / name)))
    paths += _quantization_plots(report, staged, folder)
    images = {p.relative_to(staged).as_posix(): p.read_bytes() for p in paths if p.suffix == ".png"}
    paths.append(write_text(staged / "report.html", report_html(report, images)))
    return paths


def _galleries(report: Report) -> list[Row]:
    return [row for row in report.rows if row.ok and row.top_flips]


def _figure_jobs(report: Report, inputs) -> list[tuple[str, Callable, tuple, bool]]:
    """(file name, draw, args, trim) of every report figure, the slowest first: the galleries
    (0.3-0.35 s each on 2 cores), laid out in inches, then the plots (0.1-0.35 s)."""
    jobs = []
    if inputs is not None:
        for row in _galleries(report):
            flipped = {flip["index"]: inputs[flip["index"]] for flip in row.top_flips}
            jobs.append(
                (gallery_name(report, row), flip_gallery_figure, (report, row, flipped), False)
            )
    return jobs + [
        ("per_class_accuracy.png", per_class_accuracy_figure, (report,), True),
        ("accuracy_vs_latency.png", accuracy_vs_latency_figure, (report,), True),
        ("latency_distribution.png", latency_distribution_figure, (report,), True),
        ("size.png", size_figure, (report.rows,), True),
    ]


def _draw_figures(jobs, staged: Path, figures: FigureProcess | None) -> list[Path]:
    """Draws the jobs in turn, handing the next one to the `figures` process whenever it is
    idle: the two share the work without knowing what each figure costs. Paths in job order."""
    drawn, sent = {}, []
    for name, draw, args, trim in jobs:
        if figures is not None and figures.idle():
            figures.draw(draw, *args, trim=trim)
            sent.append(name)
        else:
            drawn[name] = save_figure(draw(*args), staged / name, trim)
    for name, png in zip(sent, figures.pngs() if sent else [], strict=True):
        drawn[name] = write_png(png, staged / name)
    return [drawn[name] for name, *_ in jobs]


def _quantization_plots(report: Report, staged: Path, folder: Path) -> list[Path]:
    """The per-layer int8 error plots export drew (OUT/quantization/), copied beside the report
    so the page and a later re-render need nothing outside report/."""
    paths = []
    for row in report.rows:
        record = row.quantization.get("per_layer")
        if not record:
            continue
        name = Path(record).with_suffix(".png")
        target = staged / name
        source = next((p for p in (folder.parent / name, folder / name) if p.is_file()), None)
        if source is not None and not target.exists():
            target.parent.mkdir(exist_ok=True)
            paths.append(Path(shutil.copy2(source, target)))
    return paths


def _quantization_section(report: Report, images: dict[str, bytes]) -> list[str]:
    """Per-layer int8 error for every int8 row, and the layers a mixed model keeps in float."""
    parts, shown = [], set()
    for row in report.rows:
        record = row.quantization.get("per_layer")
        name = record and Path(record).with_suffix(".png").as_posix()
        if not name or name in shown or name not in images:
            continue
        shown.add(name)
        kept = row.quantization.get("float_layers")
        summary = f"{row.artifact}: error per layer, in graph order"
        if kept:
            replaced = row.quantization.get("replaces", {}).get("artifact")
            summary += f" (replaces {replaced}; kept in float: {', '.join(kept)})"
        parts.append(
            f"<details open><summary>{esc(summary)}</summary><figure>"
            f"{_png(images[name], summary)}</figure></details>"
        )
    return ["<h2>Per-layer int8 error</h2>", *parts] if parts else []
