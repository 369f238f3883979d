"""Judging a report: against a baseline (deltas, mismatched settings), gates, a recommendation."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from toolkit.errors import ExitCode
from toolkit.report_schema import load_report
from toolkit.results import ESTIMATED, LOCAL, UNSUPPORTED, Report, Row


def load_baseline(path: Path) -> Report:
    """An earlier report.json, checked against its schema before anything is measured (exit 2)."""
    return load_report(path, ExitCode.USAGE)


def baseline_mismatches(report: Report, baseline: Report) -> list[str]:
    """Settings that differ between this run and the baseline (they move latency by themselves)."""
    environment_then = baseline.environment if isinstance(baseline.environment, dict) else {}
    settings_then = baseline.settings if isinstance(baseline.settings, dict) else {}
    pairs = {
        "threads": (report.threads, baseline.threads),
        "cpu": (report.environment.get("cpu"), environment_then.get("cpu")),
        "batch size": (report.settings.get("batch_size"), settings_then.get("batch_size")),
    }
    return [
        f"{name} {old!r} then, {new!r} now"
        for name, (new, old) in pairs.items()
        if old is not None and old != new
    ]


def apply_baseline(report: Report, baseline: Report, source: str) -> Report:
    """Adds the change in accuracy (points) and p50 latency (%) against an earlier report, row by
    row on (artifact, runtime), and which rows are new or gone; replaces any earlier deltas."""
    earlier = {row.key: row for row in baseline.rows if row.ok}
    now, then = {row.key for row in report.rows}, {row.key for row in baseline.rows}
    gone = [
        {"artifact": row.artifact, "runtime": row.runtime, "accuracy": row.accuracy, "p50": row.p50}
        for row in baseline.rows
        if row.key not in now
    ]
    new = [list(row.key) for row in report.rows if row.key not in then]
    rows = []
    for row in report.rows:
        before = earlier.get(row.key)
        if not row.ok or before is None:
            rows.append(replace(row, delta_accuracy_pts=None, delta_p50_pct=None))
            continue
        delta_accuracy = None
        if row.accuracy is not None and before.accuracy is not None:
            delta_accuracy = 100 * (row.accuracy - before.accuracy)
        rows.append(
            replace(
                row,
                delta_accuracy_pts=delta_accuracy,
                delta_p50_pct=100 * (row.p50 / before.p50 - 1),
            )
        )
    return report.with_(rows=tuple(rows), baseline=source, baseline_new=new, baseline_gone=gone)


def recommend(report: Report, within_pts: float = 0.5, device: str = LOCAL) -> Row | None:
    """The fastest (lowest p50) ok row of `device` whose accuracy is at most `within_pts` below
    the reference's (agreement stands in when there are no labels); None when none qualifies."""

    def quality(row: Row) -> float | None:
        return row.accuracy if row.accuracy is not None else row.agreement

    best = quality(report.reference_row)
    candidates = [
        row
        for row in report.rows
        if row.ok
        and row.device_name == device
        and row.p50 is not None
        and (best is None or quality(row) is not None)
        # 1e-9: accuracies are k/10000, so a drop of exactly `within_pts` must still count.
        and (best is None or (best - quality(row)) * 100 <= within_pts + 1e-9)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda row: (row.p50, row.artifact, row.runtime))


def measured_nothing(report: Report) -> bool:
    """Whether no artifact could be measured: the reference failed, or every other row failed or
    is unsupported (an estimate is no measurement and does not count)."""
    others = [
        row for row in report.rows if row.artifact != report.reference and row.status != ESTIMATED
    ]
    return not report.reference_row.ok or (bool(others) and not any(row.ok for row in others))


def gate_failures(
    report: Report, max_accuracy_drop: float | None, max_latency_regression: float | None
) -> list[str]:
    """One line per row that fails a gate; a row that could not run fails every gate (one a
    runtime does not support is not a failure)."""
    if max_accuracy_drop is None and max_latency_regression is None:
        return []
    reference = report.reference_row
    failures = []
    for row in report.rows:
        name = report.label(row)
        if row.status in (UNSUPPORTED, ESTIMATED):  # an estimate is never gated
            continue
        if not row.ok:
            failures.append(f"{name}: could not be measured: {row.error}")
            continue
        if max_accuracy_drop is not None and None not in (row.accuracy, reference.accuracy):
            drop = 100 * (reference.accuracy - row.accuracy)
            if drop > max_accuracy_drop:
                failures.append(
                    f"{name}: accuracy {100 * row.accuracy:.2f}% is {drop:.2f} pt below "
                    f"the reference (allowed: {max_accuracy_drop:g} pt)"
                )
        growth = row.delta_p50_pct
        if (
            max_latency_regression is not None
            and growth is not None
            and growth > max_latency_regression
        ):
            failures.append(
                f"{name}: p50 latency grew {growth:.1f}% over the baseline "
                f"(allowed: {max_latency_regression:g}%)"
            )
    return failures
