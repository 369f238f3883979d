"""Cells and units shared by the terminal table, Markdown and HTML: one list of columns."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from toolkit.results import ESTIMATED, LOCAL, Report, Row, device_host

LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min")
LATENCY_UNITS = (("ms", 1.0), ("µs", 1e-3), ("ns", 1e-6))  # name, its size in ms; largest first
STAR = "★"
FAILED = "✗"
OUTSIDE = "⚠"  # measured, but outside the tolerance its file was validated to


class Column(NamedTuple):
    header: str
    cell: Callable[[Row], str]
    numeric: bool = True
    value: Callable[[Row], float | None] = lambda row: None  # what the HTML table sorts by
    drop_rank: int = 0  # narrow terminals hide the highest ranks first; 0 is never hidden


def num(value, spec: str, scale: float = 1) -> str:
    """`value * scale` formatted by `spec`, or a dash for None."""
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


def mark(report: Report, row: Row) -> str:
    """✗ for a row that failed, ≈ for an estimate, ⚠ for one outside its tolerance, ★ for the
    recommended one."""
    if row.status == ESTIMATED:
        return "≈"
    if not row.ok:
        return FAILED
    if row.within_tolerance is False:
        return OUTSIDE
    return STAR if report.is_recommended(row) else ""


def latency_text(value_ms: float | None, unit_size: float) -> str:
    """A latency in the column's unit (`unit_size` ms), three digits."""
    return three_digits(None if value_ms is None else value_ms / unit_size)


def _latency_column(report: Report, key: str, drop_rank: int) -> Column:
    unit, size = latency_unit(_latency(row, key) for row in report.rows)
    return Column(
        f"{key} {unit}",
        lambda r: latency_text(_latency(r, key), size),
        value=lambda r: _latency(r, key),
        drop_rank=drop_rank,
    )


def columns(report: Report) -> list[Column]:
    """Every column, most important first; `drop_rank` orders what a narrow terminal hides."""

    def numeric(header, attribute, spec, scale=1, drop_rank=0):
        return Column(
            header,
            lambda r: num(getattr(r, attribute), spec, scale),
            value=lambda r: getattr(r, attribute),
            drop_rank=drop_rank,
        )

    deltas = report.baseline is not None  # each beside the figure it changes
    return [
        Column("", lambda r: mark(report, r), numeric=False),
        Column("artifact", lambda r: r.artifact, numeric=False),
        Column("runtime", lambda r: r.runtime, numeric=False),
        *_device_column(report),
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
        Column(
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


def _target_columns(report: Report) -> list[Column]:
    """Microcontroller RAM (TFLM's arena) and phone-GPU fit, when some row has them."""
    columns = []
    if any("arena_bytes" in r.extras for r in report.rows):
        columns.append(
            Column(
                "arena",
                lambda r: human_size(r.extras.get("arena_bytes")),
                value=lambda r: r.extras.get("arena_bytes"),
                drop_rank=13,
            )
        )
    if any(r.compatibility.get("gpu_delegate") for r in report.rows):
        columns.append(Column("GPU delegate", _gpu_delegate, numeric=False, drop_rank=14))
    return columns


def _device_column(report: Report) -> list[Column]:
    """Where each row ran, when rows ran on more than this machine (`--device`); with the
    runtime's version wherever that runtime ran in more than one version."""
    if all(row.device_name == LOCAL for row in report.rows):
        return []
    seen: dict[str, set] = {}
    for row in report.rows:
        seen.setdefault(row.runtime, set()).add(_runtime_versions(row))

    def cell(row: Row) -> str:
        name = device_host(row.device_name)
        if len(seen[row.runtime] - {()}) < 2 or not _runtime_versions(row):
            return name
        return f"{name} ({', '.join(f'{p} {v}' for p, v in _runtime_versions(row))})"

    return [Column("device", cell, numeric=False)]


def _runtime_versions(row: Row) -> tuple:
    """The (package, version) pairs of the row's runtime on its device, as its measurement
    reported them (a row that did not run reports none)."""
    versions = row.device.get("versions") if isinstance(row.device, dict) and row.ok else None
    return tuple(sorted(versions.items())) if isinstance(versions, dict) else ()


def sorted_rows(rows) -> list[Row]:
    """Grouped by device (this machine first), then fastest first by p50; rows that did not
    run (no latency) last in their device's group."""
    rows = list(rows)
    devices = list(dict.fromkeys([LOCAL, *(row.device_name for row in rows)]))

    def key(row: Row):
        failed = not row.ok or row.p50 is None
        group = devices.index(row.device_name)
        return (group, failed, 0.0 if failed else row.p50, row.artifact, row.runtime)

    return sorted(rows, key=key)


def failed_rows(report: Report) -> list[Row]:
    """The rows that were not measured, in table order."""
    return [row for row in sorted_rows(report.rows) if not row.ok]


def outside_rows(report: Report) -> list[Row]:
    """The measured rows outside the tolerance their file was validated to, in table order."""
    return [row for row in sorted_rows(report.rows) if row.ok and row.within_tolerance is False]


def outside_reason(row: Row) -> str:
    """Which bounds of its validated tolerance a row misses, in one line."""
    misses = "; ".join(row.tolerance_misses or []) or "no reason given"
    return f"outside the tolerance it was validated to: {misses}"


def ok_rows(rows) -> list[Row]:
    """The measured rows with an accuracy, in table order."""
    return [r for r in sorted_rows(rows) if r.ok and r.accuracy is not None]


def reason(row: Row) -> str:
    """Why a row was not measured, in one line."""
    return f"{row.status}: {row.error or 'no reason given'}"


def title(report: Report) -> str:
    """The line under every rendering's heading: rows, threads, reference, date."""
    return (
        f"{len(report.rows)} rows · threads {report.threads} · "
        f"reference {report.reference} · {report.created}"
    )


def recommended_label(report: Report) -> str | None:
    """The recommended row's label, None when no row is recommended."""
    row = next((r for r in report.rows if report.is_recommended(r)), None)
    return None if row is None else report.label(row)


def class_name(report: Report, index: int | None) -> str:
    """The name of class `index` (its number when the report names no such class)."""
    if index is None:
        return "–"
    names = report.class_names
    return names[index] if 0 <= index < len(names) else str(index)


def gate_limits(report: Report) -> list[str]:
    """What the gate allows, in words; empty when no gate was set."""
    gate, limits = report.gate, []
    if gate.get("max_accuracy_drop") is not None:
        limits.append(f"at most {gate['max_accuracy_drop']:g} pt below the reference's accuracy")
    if gate.get("max_latency_regression") is not None:
        limits.append(f"p50 at most {gate['max_latency_regression']:g}% above the baseline's")
    if gate.get("fail_outside_tolerance"):
        limits.append("within the tolerance its file was validated to")
    return limits


def short(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def gallery_name(report: Report, row: Row) -> str:
    """The row's flip gallery inside the report folder: flips/<artifact>.png (plus the runtime
    when the artifact has several rows)."""
    several = report.label(row) != row.artifact
    return f"flips/{row.artifact}.{row.runtime}.png" if several else f"flips/{row.artifact}.png"
