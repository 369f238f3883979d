"""Every measured row judged against the reference row by the one comparator."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from toolkit.comparing.machine import cpu_model
from toolkit.comparing.measurement import Measurement, MeasureSettings
from toolkit.comparing.plan import REFERENCE
from toolkit.errors import ExitCode, ToolkitError
from toolkit.metrics import (
    CLASS_KINDS,
    compare_named,
    flip_details,
    latency_percentiles,
    latency_quantiles,
    per_class_accuracy,
    worst_of,
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


def output_heads(manifest: Manifest, reference: dict) -> list[dict]:
    """The outputs to judge, in the model's order: name, kind and class names, as export
    recorded them; a manifest from before several outputs names its one output by its task
    (no manifest: the tutorial's classifier)."""
    if manifest is None:
        from toolkit.data import CLASS_NAMES

        return [{"name": next(iter(reference)), "kind": "classifier", "class_names": CLASS_NAMES}]
    if manifest.outputs:
        return [
            {
                "name": head["name"],
                "kind": head.get("kind", "values"),
                "class_names": list(head.get("class_names") or []),
            }
            for head in manifest.outputs
        ]
    kind = "classifier" if manifest.task == "classification" else "values"
    return [{"name": next(iter(reference)), "kind": kind, "class_names": manifest.class_names}]


def gallery_class_names(manifest: Manifest, heads: list[dict]) -> list[str]:
    """The class names the report's per-class plot and galleries use: the one output's, or the
    first classifier output's when there are several outputs."""
    if len(heads) == 1:
        return list(manifest.class_names)
    classifiers = [h for h in heads if h["kind"] in CLASS_KINDS]
    return list(classifiers[0]["class_names"]) if classifiers else []


def head_labels(labels, heads: list[dict]) -> dict:
    """Labels by output name: a dict already, or one array for the one classifier output."""
    if isinstance(labels, dict):
        return labels
    classifiers = [h["name"] for h in heads if h["kind"] in CLASS_KINDS]
    return {classifiers[0]: labels} if labels is not None and classifiers else {}


def evaluation_labels(dataset, manifest: Manifest, limit: int | None):
    """The labels compare judges by: by output name for several outputs, else the one array
    (classification only), the first `limit` items."""
    if dataset.output_labels:
        return {name: labels[:limit] for name, labels in dataset.output_labels.items() if name}
    labels = dataset.test_labels if manifest.task == "classification" else None
    return None if labels is None else labels[:limit]


def measured_row(
    base: Row, measurement: Measurement, reference: dict, labels: dict, heads: list[dict]
) -> Row:
    """The row's figures from a Measurement: each output judged by the one comparator, the
    row's own figures the worst of them; flips and per-class accuracy of the first classifier
    output (the same one in every row, so rows compare like with like; each output's flip
    count is under `outputs`)."""
    outputs, latencies = measurement.outputs, measurement.latencies_ns
    comparisons = compare_named(outputs, reference, heads, labels)
    per_class = flips = None
    classifiers = [h for h in heads if h["kind"] in CLASS_KINDS]
    if classifiers:
        head = classifiers[0]
        name = head["name"]
        if labels.get(name) is not None:
            classes = max(len(head["class_names"]), 2 if head["kind"] == "binary" else 1)
            per_class = per_class_accuracy(outputs[name], labels[name], classes)
        flips = flip_details(outputs[name], reference[name], labels.get(name))
        if len(heads) > 1:
            flips["top_flips"] = [{**flip, "output": name} for flip in flips["top_flips"]]
    per_output = None
    if len(heads) > 1:
        per_output = {
            h["name"]: {"kind": h["kind"], **comparisons[h["name"]].to_json()} for h in heads
        }
    return replace(
        base,
        **worst_of(comparisons).to_json(),
        **(flips or {}),
        per_class_accuracy=per_class,
        outputs=per_output,
        latency_ms=latency_percentiles(latencies),
        latency_quantiles_ms=latency_quantiles(latencies),
        latency_runs=len(latencies),
        throughput_ips=float(measurement.throughput_ips),
        load_ms=float(measurement.load_ms),
        peak_rss_mb=float(measurement.peak_rss_mb),
        extras=measurement.extras,
    )


def _reference(out: Path, results) -> dict:
    """The reference row's outputs by name; ToolkitError (exit 4) when it failed or any output
    is not finite."""
    reference_row, reference_result = results[0]
    if reference_row.ok and not all(
        np.isfinite(array).all() for array in reference_result.outputs.values()
    ):
        reference_row, reference_result = (
            replace(reference_row, status=FAILED),
            "outputs contain NaN or infinity",
        )
    if not reference_row.ok:
        raise ToolkitError(
            f"{out / REFERENCE}: the reference failed: {reference_result}", ExitCode.ARTIFACT
        )
    return reference_result.outputs


def build_report(
    out: Path, manifest: Manifest, results, labels, count: int, settings: MeasureSettings
) -> Report:
    """The Report of every (row, Measurement or reason), the reference's row first."""
    reference = _reference(out, results)
    heads = output_heads(manifest, reference)
    missing = [head["name"] for head in heads if head["name"] not in reference]
    if missing:
        raise ToolkitError(
            f"{out / REFERENCE}: the reference failed: no output named {missing[0]!r}"
            f" (found {', '.join(reference)})",
            ExitCode.ARTIFACT,
        )
    labels = head_labels(labels, heads)
    rows, samples = [], {}
    for base, result in results:
        if not base.ok:
            rows.append(replace(base, error=result))
            continue
        try:
            row = measured_row(base, result, reference, labels, heads)
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
        class_names=gallery_class_names(manifest, heads),
        test_images=count,
        settings={
            "runs": settings.runs,
            "max_seconds": settings.max_seconds,
            "batch_size": settings.batch_size,
            "warmup": settings.warmup,
        },
        rows=tuple(rows),
        latency_samples=samples,
        outputs=[{**head, "shape": list(reference[head["name"]].shape[1:])} for head in heads],
    )
