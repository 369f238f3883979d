"""report.md and report.csv: the table as text, for reading in a pull request and for scripts.

report.csv has one row per (artifact, runtime), columns in this order (an empty cell is None):
    artifact, format, variant, runtime, status, error, accuracy, agreement, flipped, max_abs_diff,
    latency_p50_ms, latency_p90_ms, latency_p99_ms, latency_mean_ms, latency_std_ms,
    latency_min_ms, throughput_ips, load_ms, size_bytes, peak_rss_mb, rmse, snr_db, cosine,
    [delta_accuracy_pts, delta_p50_pct: only when the rows carry them, i.e. a baseline was given],
    acc_0 ... acc_<n-1>: per-class accuracy, indexed like `class_names` in report.json,
    within_tolerance: true, false, or empty for the reference and unvalidated files (last, as
    columns are only ever added at the end).
Accuracies are fractions (0.8774), as in report.json; the table, Markdown and HTML show percent.
"""

from __future__ import annotations

import csv
import io

from toolkit.reporting.cells import (
    LATENCY_KEYS,
    OUTSIDE,
    STAR,
    class_name,
    columns,
    failed_rows,
    gallery_name,
    gate_limits,
    outside_reason,
    outside_rows,
    reason,
    recommended_label,
    sorted_rows,
    title,
)
from toolkit.results import DELTA_KEYS, Report, Row

CSV_COLUMNS = (
    ["artifact", "format", "variant", "runtime", "status", "error"]
    + ["accuracy", "agreement", "flipped", "max_abs_diff"]
    + [f"latency_{key}_ms" for key in LATENCY_KEYS]
    + ["throughput_ips", "load_ms", "size_bytes", "peak_rss_mb", "rmse", "snr_db", "cosine"]
)


def _markdown_line(cells) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _gate_lines(report: Report) -> list[str]:
    if failures := report.gate.get("failures"):
        return [f"**Gate failed** ({len(failures)}):", "", *(f"- {f}" for f in failures), ""]
    if limits := gate_limits(report):
        return [f"**Gate passed**: every row is {' and '.join(limits)}.", ""]
    return []


def _flip_lines(report: Report, row: Row) -> list[str]:
    changes = ", ".join(
        f"{class_name(report, c['true'])} → {class_name(report, c['predicted'])} "
        f"{c['artifact'] - c['reference']:+d}"
        for c in (row.confusion_changes or [])[:5]
    )
    lines = [
        f"- `{report.label(row)}`: {row.flipped} flipped"
        + (f"; confusion cells that changed most: {changes}" if changes else "")
    ]
    if row.top_flips:
        lines.append(f"  ![{report.label(row)} flips]({gallery_name(report, row)})")
    return lines


def report_markdown(report: Report) -> str:
    """report.md: the same table as the terminal, plus failures with their reasons."""
    shown = columns(report)
    lines = ["# Compare report", "", title(report), "", *_gate_lines(report)]
    if recommended := recommended_label(report):
        lines += [f"Recommended: **{recommended}** ({STAR})", ""]
    lines.append(_markdown_line(c.header for c in shown))
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in shown) + "|")
    lines += [_markdown_line(c.cell(row) for c in shown) for row in sorted_rows(report.rows)]
    if failed := failed_rows(report):
        lines += ["", "## Not measured", ""]
        lines += [f"- `{report.label(row)}`: {reason(row)}" for row in failed]
    if outside := outside_rows(report):
        lines += ["", f"## {OUTSIDE} Outside the tolerance validated at export", ""]
        lines += [f"- `{report.label(row)}`: {outside_reason(row)}" for row in outside]
    if flipped := [row for row in sorted_rows(report.rows) if row.ok and row.flipped]:
        lines += ["", "## What flipped", ""]
        for row in flipped:
            lines += _flip_lines(report, row)
    return "\n".join(lines) + "\n"


def report_csv(report: Report) -> str:
    """report.csv: one row per (artifact, runtime) in report order; layout in the module
    docstring."""
    data = report.to_json()
    deltas = list(DELTA_KEYS) if report.baseline is not None else []
    per_class = [f"acc_{i}" for i in range(len(report.class_names))]
    header = CSV_COLUMNS + deltas + per_class + ["within_tolerance"]
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
        if row["within_tolerance"] is not None:  # as report.json spells it, not Python's True
            flat["within_tolerance"] = "true" if row["within_tolerance"] else "false"
        writer.writerow({key: "" if flat.get(key) is None else flat[key] for key in header})
    return buffer.getvalue()
