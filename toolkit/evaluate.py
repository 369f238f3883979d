"""Runs every artifact in its own worker process and measures accuracy and speed the same way.

Timing lives here, not in the runners: each runner only binds its input into the runtime's own
buffers and hands back the bare call, which is timed with perf_counter_ns after a warm-up.
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
import os
import platform
import resource
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from toolkit.artifacts import Artifact, Manifest
from toolkit.data import CLASS_NAMES, normalize
from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.metrics import (
    accuracy,
    agreement,
    flipped,
    latency_percentiles,
    max_abs_diff,
    per_class_accuracy,
)
from toolkit.model import library_versions

REFERENCE = "model.keras"


@dataclass(frozen=True)
class MeasureConfig:
    """How hard to measure; the same for every artifact of one compare."""

    threads: int = 1
    runs: int = 1000
    max_seconds: float = 5.0
    batch_size: int = 256
    warmup: int = 50
    timeout_seconds: float = 300.0


def time_calls(
    call: Callable[[], object], runs: int, max_seconds: float, warmup: int
) -> np.ndarray:
    """Per-call wall time in ns: `runs` calls, or fewer when `max_seconds` runs out first."""
    for _ in range(warmup):
        call()
    samples = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    deadline = clock() + int(max_seconds * 1e9)
    count = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection inside a microsecond call would land in the percentiles
    try:
        while count < runs:
            start = clock()
            call()
            end = clock()
            samples[count] = end - start
            count += 1
            if end > deadline:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples[:count]


def measure(runtime: str, path: Path, images: np.ndarray, config: MeasureConfig) -> dict:
    """Load time, full-set probabilities, batch-1 latency and batch throughput of one artifact."""
    from toolkit import quiet_stderr
    from toolkit.runners import RUNNERS

    with quiet_stderr():
        importlib.import_module(RUNNERS[runtime].module)  # load time is the session, not imports
        start = time.perf_counter_ns()
        runner = RUNNERS[runtime](path, config.threads)
        load_ms = (time.perf_counter_ns() - start) / 1e6
    with runner:
        probabilities = runner.predict(images).astype(np.float32)
        latencies = time_calls(
            runner.bind(images[:1]), config.runs, config.max_seconds, config.warmup
        )
        batch = images[: config.batch_size]
        batch_calls = time_calls(
            runner.bind(batch), max(5, config.runs // 20), min(config.max_seconds, 2.0), warmup=3
        )
    return {
        "probabilities": probabilities,
        "latencies_ns": latencies,
        "throughput_ips": len(batch) * len(batch_calls) / (batch_calls.sum() / 1e9),
        "load_ms": load_ms,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _worker(connection, runtime, path, test_images, config) -> None:
    """Entry point of a measuring process: sends ("ok", result) or ("error", one line)."""
    import toolkit  # noqa: F401 - sets the TF log level before any runtime loads

    try:
        images = normalize(test_images)
        connection.send(("ok", measure(runtime, path, images, config)))
    except ToolkitError as exc:
        connection.send(("error", str(exc)))
    except Exception as exc:  # noqa: BLE001 - a runtime failing is a failed row, not a crash
        last = traceback.format_exception_only(exc)[-1].strip()
        connection.send(("error", f"{type(exc).__name__} in {runtime}: {last}"))
    finally:
        connection.close()


def measure_isolated(
    runtime: str, path: Path, test_images: np.ndarray, config: MeasureConfig, worker=_worker
) -> tuple[str, dict | str]:
    """Runs `measure` in a spawned process: a crash, abort or hang becomes ("error", reason)."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(
        target=worker, args=(sender, runtime, path, test_images, config), daemon=True
    )
    process.start()
    sender.close()
    try:
        if not receiver.poll(config.timeout_seconds):
            return "error", f"timed out after {config.timeout_seconds:g} s"
        try:
            return receiver.recv()
        except EOFError:  # the worker died before sending anything
            process.join(5)
            return "error", _describe_exit(process.exitcode)
    finally:
        if process.is_alive():
            process.kill()
        process.join(5)
        receiver.close()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"worker crashed ({signal.Signals(-code).name})"
    return f"worker exited with code {code} before reporting"


def environment(versions: dict[str, str]) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        # toolkit/__init__.py sets it to 0 unless the caller chose: it changes TF's CPU kernels.
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def _row(result: dict, reference: np.ndarray, labels: np.ndarray) -> dict:
    probabilities = result["probabilities"]
    if not np.isfinite(probabilities).all():
        raise ValueError("outputs contain NaN or infinity")
    return {
        "accuracy": accuracy(probabilities, labels),
        "agreement": agreement(probabilities, reference),
        "flipped": flipped(probabilities, reference),
        "max_abs_diff": max_abs_diff(probabilities, reference),
        "per_class_accuracy": per_class_accuracy(probabilities, labels, len(CLASS_NAMES)),
        "latency_ms": latency_percentiles(result["latencies_ns"]),
        "latency_runs": len(result["latencies_ns"]),
        "throughput_ips": float(result["throughput_ips"]),
        "load_ms": float(result["load_ms"]),
        "peak_rss_mb": float(result["peak_rss_mb"]),
    }


METRIC_KEYS = (
    "accuracy",
    "agreement",
    "flipped",
    "max_abs_diff",
    "per_class_accuracy",
    "latency_ms",
    "latency_runs",
    "throughput_ips",
    "load_ms",
    "peak_rss_mb",
)


def compare_artifacts(
    out: Path,
    manifest: Manifest,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    config: MeasureConfig,
    on_artifact: Callable[[Artifact, str], None] = lambda artifact, status: None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """The report dict (report.json) and the per-call latencies in ms of every artifact."""
    names = [a.name for a in manifest.artifacts]
    if REFERENCE not in names:
        raise ToolkitError(
            f"{out / 'manifest.json'}: no {REFERENCE} reference listed", ExitCode.ARTIFACT
        )
    ordered = sorted(manifest.artifacts, key=lambda a: a.name != REFERENCE)
    results: dict[str, tuple[str, dict | str]] = {}
    for artifact in ordered:  # run every artifact first, compare afterwards
        results[artifact.name] = measure_isolated(
            artifact.runtime, out / artifact.path, test_images, config
        )
        on_artifact(artifact, results[artifact.name][0])
    status, reference_result = results[REFERENCE]
    if status == "ok" and not np.isfinite(reference_result["probabilities"]).all():
        status, reference_result = "error", "outputs contain NaN or infinity"
    if status != "ok":
        raise ToolkitError(
            f"{out / REFERENCE}: the reference failed: {reference_result}", ExitCode.ARTIFACT
        )
    reference = reference_result["probabilities"]
    rows, samples = [], {}
    for artifact in manifest.artifacts:
        status, result = results[artifact.name]
        row = {
            "artifact": artifact.name,
            "format": artifact.format,
            "variant": artifact.variant,
            "runtime": artifact.runtime,
            "size_bytes": artifact.size_bytes,
            "status": "ok",
            "error": None,
        }
        try:
            if status != "ok":
                raise ValueError(result)
            row.update(_row(result, reference, test_labels))
            samples[artifact.name] = result["latencies_ns"] / 1e6
        except ValueError as exc:
            row.update({"status": "failed", "error": str(exc), **dict.fromkeys(METRIC_KEYS)})
        rows.append(row)
    report = {
        "threads": config.threads,
        "reference": REFERENCE,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": environment(library_versions()),
        "class_names": list(CLASS_NAMES),
        "test_images": len(test_labels),
        "settings": {
            "runs": config.runs,
            "max_seconds": config.max_seconds,
            "batch_size": config.batch_size,
            "warmup": config.warmup,
        },
        "rows": rows,
    }
    return report, samples


def load_baseline(path: Path) -> dict:
    """An earlier report.json, checked before anything is measured (exit 2 when unusable)."""
    import json

    try:
        data = json.loads(path.read_text())
        rows = data["rows"]
        for row in rows:
            if row.get("status") == "ok":
                name, accuracy, p50 = row["artifact"], row["accuracy"], row["latency_ms"]["p50"]
                if not (isinstance(name, str) and 0 <= accuracy <= 1 and p50 > 0):
                    raise ValueError(f"row {name!r} has accuracy {accuracy}, p50 {p50}")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ToolkitError(
            f"{path}: not a usable toolkit report.json ({type(exc).__name__}: {first_line(exc)})",
            ExitCode.USAGE,
        ) from None
    return data


def baseline_mismatches(report: dict, baseline: dict) -> list[str]:
    """Settings that differ between this run and the baseline (they move latency by themselves)."""
    pairs = {
        "threads": (report.get("threads"), baseline.get("threads")),
        "cpu": (report["environment"].get("cpu"), baseline.get("environment", {}).get("cpu")),
        "batch size": (
            report["settings"].get("batch_size"),
            baseline.get("settings", {}).get("batch_size"),
        ),
    }
    return [
        f"{name} {old!r} then, {new!r} now"
        for name, (new, old) in pairs.items()
        if old is not None and old != new
    ]


def apply_baseline(report: dict, baseline: dict) -> None:
    """Adds the change in accuracy (points) and p50 latency (%) against an earlier report.json."""
    earlier = {
        row["artifact"]: row for row in baseline.get("rows", []) if row.get("status") == "ok"
    }
    for row in report["rows"]:
        before = earlier.get(row["artifact"])
        if row["status"] != "ok" or before is None:
            row["delta_accuracy_pts"] = row["delta_p50_pct"] = None
            continue
        row["delta_accuracy_pts"] = 100 * (row["accuracy"] - before["accuracy"])
        row["delta_p50_pct"] = 100 * (row["latency_ms"]["p50"] / before["latency_ms"]["p50"] - 1)


def gate_failures(
    report: dict, max_accuracy_drop: float | None, max_latency_regression: float | None
) -> list[str]:
    """One line per artifact that fails a gate; a row that could not run fails every gate."""
    if max_accuracy_drop is None and max_latency_regression is None:
        return []
    reference = next(r for r in report["rows"] if r["artifact"] == report["reference"])
    failures = []
    for row in report["rows"]:
        if row["status"] != "ok":
            failures.append(f"{row['artifact']}: could not be measured: {row['error']}")
            continue
        drop = 100 * (reference["accuracy"] - row["accuracy"])
        if max_accuracy_drop is not None and drop > max_accuracy_drop:
            failures.append(
                f"{row['artifact']}: accuracy {100 * row['accuracy']:.2f}% is {drop:.2f} pt below "
                f"the reference (allowed: {max_accuracy_drop:g} pt)"
            )
        growth = row.get("delta_p50_pct")
        if (
            max_latency_regression is not None
            and growth is not None
            and growth > max_latency_regression
        ):
            failures.append(
                f"{row['artifact']}: p50 latency grew {growth:.1f}% over the baseline "
                f"(allowed: {max_latency_regression:g}%)"
            )
    return failures
