"""Every measured row judged against the reference row by the one comparator."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from toolkit.compare.machine import cpu_model
from toolkit.compare.measurement import Measurement, MeasureSettings
from toolkit.compare.plan import REFERENCE
from toolkit.errors import ExitCode, ToolkitError
from toolkit.metrics import (
    compare_outputs,
    flip_details,
    latency_percentiles,
    latency_quantiles,
    per_class_accuracy,
)
from toolkit.process import recorded_versions
from toolkit.results import FAILED, Report, Row
from toolkit.store import Manifest


def environment(versions: dict[str, str]) -> dict:
    """The host's description as report.json records it."""
    import platform

    return {
        # toolkit/__init__.py sets it to 0 unless the caller chose: it changes TF's CPU kernels.
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def measured_row(
    base: Row,
    measurement: Measurement,
    reference: np.ndarray,
    labels: np.ndarray | None,
    classes: int,
) -> Row:
    """The row's figures from a Measurement (its first output), judged by the one comparator."""
    outputs, latencies = measurement.first_output, measurement.latencies_ns
    comparison = compare_outputs(outputs, reference, labels, class_scores=classes > 0)
    per_class = flips = None
    if labels is not None and classes:
        per_class = per_class_accuracy(outputs, labels, classes)
    if classes:
        flips = flip_details(outputs, reference, labels)
    return replace(
        base,
        **comparison.to_json(),
        **(flips or {}),
        per_class_accuracy=per_class,
        latency_ms=latency_percentiles(latencies),
        latency_quantiles_ms=latency_quantiles(latencies),
        latency_runs=len(latencies),
        throughput_ips=float(measurement.throughput_ips),
        load_ms=float(measurement.load_ms),
        peak_rss_mb=float(measurement.peak_rss_mb),
        extras=measurement.extras,
    )


def _reference(out: Path, results) -> np.ndarray:
    """The reference row's outputs; ToolkitError (exit 4) when it failed or is not finite."""
    reference_row, reference_result = results[0]
    if reference_row.ok and not np.isfinite(reference_result.first_output).all():
        reference_row, reference_result = (
            replace(reference_row, status=FAILED),
            "outputs contain NaN or infinity",
        )
    if not reference_row.ok:
        raise ToolkitError(
            f"{out / REFERENCE}: the reference failed: {reference_result}", ExitCode.ARTIFACT
        )
    return reference_result.first_output


def build_report(
    out: Path, manifest: Manifest, results, labels, count: int, settings: MeasureSettings
) -> Report:
    """The Report of every (row, Measurement or reason), the reference's row first."""
    reference = _reference(out, results)
    classes = len(manifest.class_names) if manifest.task == "classification" else 0
    rows, samples = [], {}
    for base, result in results:
        if not base.ok:
            rows.append(replace(base, error=result))
            continue
        try:
            row = measured_row(base, result, reference, labels, classes)
        except ValueError as exc:
            row = replace(base, status=FAILED, error=str(exc))
        else:
            samples[row.key] = result.latencies_ns / 1e6
        rows.append(row)
    return Report(
        threads=settings.threads,
        reference=REFERENCE,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        environment=environment(recorded_versions()),
        class_names=list(manifest.class_names),
        test_images=count,
        settings={
            "runs": settings.runs,
            "max_seconds": settings.max_seconds,
            "batch_size": settings.batch_size,
            "warmup": settings.warmup,
        },
        rows=tuple(rows),
        latency_samples=samples,
    )
