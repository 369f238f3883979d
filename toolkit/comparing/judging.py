"""Judging a report: against a baseline (deltas, mismatched settings), gates, a recommendation."""

from __future__ import annotations

import math
from dataclasses import asdict, fields, replace
from pathlib import Path

from toolkit.errors import ExitCode
from toolkit.exporters.base import Tolerance
from toolkit.metrics import Comparison
from toolkit.report_schema import load_report
from toolkit.results import ESTIMATED, LOCAL, UNSUPPORTED, Report, Row
from toolkit.store import Manifest


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
    """The fastest (lowest p50) ok row of `device` within its tolerance whose accuracy is at most
    `within_pts` below the reference's (agreement stands in when there are no labels); None when
    none qualifies."""

    def quality(row: Row) -> float | None:
        return row.accuracy if row.accuracy is not None else row.agreement

    best = quality(report.reference_row)
    candidates = [
        row
        for row in report.rows
        if row.ok
        and row.device_name == device
        and row.within_tolerance is not False
        and row.p50 is not None
        and (best is None or quality(row) is not None)
        # 1e-9: accuracies are k/10000, so a drop of exactly `within_pts` must still count.
        and (best is None or (best - quality(row)) * 100 <= within_pts + 1e-9)
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda row: (row.p50, row.artifact, row.runtime))


def with_tolerances(report: Report, manifest: Manifest) -> Report:
    """Every measured row judged against the tolerance its artifact was validated to at export
    (recorded in the manifest), by the same comparator: export validates in one runtime, compare
    runs the file in several. None for the reference and where no tolerance was recorded."""
    validations = {a.name: a.validation for a in manifest.artifacts}
    reference = report.reference_row
    rows = []
    for row in report.rows:
        bounds = validations.get(row.artifact, {}).get("tolerance")
        if not row.ok or row.artifact == report.reference or not isinstance(bounds, dict):
            rows.append(row)
            continue
        try:
            tolerance = Tolerance(**bounds)
        except TypeError:  # a manifest from a later toolkit: a bound this one does not know
            rows.append(row)
            continue
        misses = []
        for name, figures in _output_figures(row).items():
            accuracy = _output_figures(reference).get(name, {}).get("accuracy")
            missed = tolerance.failures(_comparison(figures), accuracy)
            misses += [f"{name}: {m}" if name else m for m in missed]
        rows.append(replace(row, within_tolerance=not misses, tolerance_misses=misses or None))
    return report.with_(rows=tuple(rows))


def _output_figures(row: Row) -> dict[str, dict]:
    """Each output's figures by name; a model with one output has the row's own."""
    outputs = getattr(row, "outputs", None)
    return outputs if outputs else {"": asdict(row)}


def _comparison(figures: dict) -> Comparison:
    """A Comparison from a row's stored figures, where a non-finite SNR is null: +inf for
    identical outputs (max |diff| 0), else -inf (a reference of zeros has no signal)."""
    snr = figures.get("snr_db")
    if snr is None:
        snr = math.inf if figures.get("max_abs_diff") == 0 else -math.inf
    known = {f.name for f in fields(Comparison)}
    return Comparison(**{**{k: figures.get(k) for k in known}, "snr_db": snr})


def measured_nothing(report: Report) -> bool:
    """Whether no artifact could be measured: the reference failed, or every other row failed or
    is unsupported (an estimate is no measurement and does not count)."""
    others = [
        row for row in report.rows if row.artifact != report.reference and row.status != ESTIMATED
    ]
    return not report.reference_row.ok or (bool(others) and not any(row.ok for row in others))


def gate_failures(
    report: Report,
    max_accuracy_drop: float | None,
    max_latency_regression: float | None,
    outside_tolerance: bool = False,
) -> list[str]:
    """One line per row that fails a gate; a row that could not run fails every gate (one a
    runtime does not support is not a failure). With `outside_tolerance`, so does a row outside
    the tolerance its artifact was validated to."""
    if max_accuracy_drop is None and max_latency_regression is None and not outside_tolerance:
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
        if outside_tolerance and row.within_tolerance is False:
            misses = "; ".join(row.tolerance_misses or [])
            failures.append(f"{name}: outside the tolerance it was validated to ({misses})")
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
