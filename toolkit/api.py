"""The Python API: one function per command, each doing all the command does except printing.

`toolkit/__init__.py` re-exports these lazily, so `import toolkit` loads no TensorFlow. Every
function raises `ToolkitError` (with the CLI's exit code) and returns typed results.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError
from toolkit.exporting import DEFAULT_CALIB_SAMPLES, DEFAULT_OPSET


def train(
    out: str | Path = "exported",
    *,
    arch: str = "mlp",
    epochs: int = 10,
    batch_size: int = 32,
    seed: int = 0,
    limit: int | None = None,
    resume: bool = False,
    data_dir: str | Path | None = None,
    on_progress: Callable | None = None,
):
    """Trains the tutorial model; writes OUT/model.keras, OUT/training/ and OUT/plots/.

    Returns the `TrainResult` (model, history, test probabilities, metrics.json content).
    """
    from toolkit import import_tensorflow
    from toolkit.artifacts import OutputLock
    from toolkit.data import load_dataset
    from toolkit.model import TrainConfig, save_training_outputs
    from toolkit.model import train as train_model

    out = Path(out)
    import_tensorflow()
    dataset = load_dataset(_path(data_dir))
    config = TrainConfig(arch=arch, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit)
    with OutputLock(out):
        result = train_model(
            dataset, config, out / "training" / "checkpoint", resume=resume, on_progress=on_progress
        )
        save_training_outputs(out, dataset, result)
    return result


def export(
    out: str | Path = "exported",
    *,
    model: str | Path | None = None,
    formats: Sequence[str] = ("all",),
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    opset: int = DEFAULT_OPSET,
    validate: bool = True,
    data_dir: str | Path | None = None,
    on_artifact: Callable | None = None,
):
    """Exports `model` (default OUT/model.keras) to `formats`, validates each artifact and writes
    OUT/manifest.json; returns the `Manifest`."""
    from toolkit import import_tensorflow
    from toolkit.exporting import export_artifacts

    import_tensorflow()
    return export_artifacts(
        Path(out),
        _path(model),
        list(formats),
        calib_samples,
        opset,
        validate=validate,
        data_dir=_path(data_dir),
        on_artifact=on_artifact or (lambda artifact: None),
    )


def compare(
    out: str | Path = "exported",
    *,
    threads: int = 1,
    runs: int = 1000,
    max_seconds: float = 5.0,
    batch_size: int = 256,
    max_accuracy_drop: float | None = None,
    baseline: str | Path | None = None,
    max_latency_regression: float | None = None,
    timeout: float = 300.0,
    max_memory: int | None = None,
    verify: bool = True,
    runtimes: Sequence[str] | None = None,
    data_dir: str | Path | None = None,
    on_row: Callable | None = None,
):
    """Measures every artifact of OUT/manifest.json in its runtime(s), writes OUT/report/ and
    returns the `Report`; `report.gate["failures"]` lists what failed a gate. `max_memory` (MB,
    default half the RAM) stops a worker that grows past it."""
    from toolkit.artifacts import OutputLock, recover_staging
    from toolkit.data import load_dataset
    from toolkit.evaluate import (
        MeasureConfig,
        apply_baseline,
        baseline_mismatches,
        default_max_memory_mb,
        gate_failures,
        load_baseline,
        measure_rows,
        recommend,
    )
    from toolkit.report import write_reports

    out = Path(out)
    if max_latency_regression is not None and baseline is None:
        raise ToolkitError("--max-latency-regression needs --baseline", ExitCode.USAGE)
    earlier = load_baseline(Path(baseline)) if baseline is not None else None
    require_folder(out)
    dataset = load_dataset(_path(data_dir))
    config = MeasureConfig(
        threads=threads,
        runs=runs,
        max_seconds=max_seconds,
        batch_size=batch_size,
        timeout_seconds=timeout,
        max_memory_mb=default_max_memory_mb() if max_memory is None else max_memory,
    )
    with OutputLock(out):
        recover_staging(out)
        manifest = checked_manifest(out, verify)
        report = measure_rows(
            out,
            manifest,
            dataset.test_images,
            dataset.test_labels,
            config,
            list(runtimes) if runtimes else None,
            on_row or (lambda row: None),
        )
        if earlier is not None:
            report = apply_baseline(report, earlier, str(baseline))
            report = report.with_(
                warnings=tuple(
                    f"{baseline}: {difference}; latency deltas compare unlike settings"
                    for difference in baseline_mismatches(report, earlier)
                )
            )
        best = recommend(report)
        report = report.with_(
            recommended=best and best.artifact,
            recommended_runtime=best and best.runtime,
            gate={
                "max_accuracy_drop": max_accuracy_drop,
                "max_latency_regression": max_latency_regression,
                "failures": gate_failures(report, max_accuracy_drop, max_latency_regression),
            },
        )
        write_reports(report, out / "report")
    return report


@dataclass(frozen=True)
class Predictions:
    """What `predict` computed: one entry per input, in the order given."""

    names: list[str]
    labels: list[int | None]  # the true class where known (test-set inputs)
    probabilities: object  # numpy (N, K)
    class_names: list[str]
    runtime: str
    warnings: list[str]


def predict(
    images: Sequence[str | Path] = (),
    *,
    out: str | Path = "exported",
    artifact: str | Path | None = None,
    index: Sequence[int] = (),
    plot: str | Path | None = None,
    threads: int = 1,
    verify: bool = True,
    data_dir: str | Path | None = None,
) -> Predictions:
    """Classifies image files and/or test-set images (`index`) with any artifact (default
    OUT/model.keras); writes the tutorial's prediction figure to `plot` when given."""
    import numpy as np

    from toolkit.artifacts import MANIFEST_NAME, check_replaceable, load_manifest
    from toolkit.data import CLASS_NAMES, load_dataset, normalize
    from toolkit.evaluate import predict_isolated
    from toolkit.figures import plot_image_predictions
    from toolkit.prediction import check_listed_checksum, load_image, runtime_for
    from toolkit.runners import RUNNERS

    if not images and not index:
        raise ToolkitError("give image files, or --index N for test-set images", ExitCode.USAGE)
    path = Path(artifact) if artifact is not None else Path(out) / "model.keras"
    manifest = load_manifest(path.parent) if (path.parent / MANIFEST_NAME).is_file() else None
    if plot is not None:
        check_replaceable(Path(plot))  # before the work, not after it
    if verify:
        check_listed_checksum(path, manifest)
    names, pixels, labels, warnings = [], [], [], []
    for image_path in map(Path, images):
        array, warning = load_image(image_path)
        warnings += [warning] if warning else []
        names.append(str(image_path))
        pixels.append(array)
        labels.append(None)
    if index:
        dataset = load_dataset(_path(data_dir))
        for i in index:
            names.append(f"test image {i}")
            pixels.append(dataset.test_images[i])
            labels.append(int(dataset.test_labels[i]))
    batch = np.stack(pixels)
    runtime = runtime_for(path, manifest)
    probabilities = predict_isolated(RUNNERS[runtime], path, normalize(batch), threads)
    if plot is not None:
        plot_image_predictions(batch, probabilities, labels, CLASS_NAMES, Path(plot))
    return Predictions(names, labels, probabilities, list(CLASS_NAMES), runtime, warnings)


@dataclass(frozen=True)
class Verification:
    """The manifest checked and one line per listed file that is missing or changed."""

    manifest: object
    problems: list[str]


def verify(out: str | Path = "exported") -> Verification:
    """Recomputes every checksum of OUT/manifest.json (a read-only folder is checked, not
    repaired)."""
    from toolkit.artifacts import OutputLock, load_manifest, recover_staging, verify_manifest

    out = Path(out)
    require_folder(out)
    writable = os.access(out, os.W_OK)
    with OutputLock(out) if writable else contextlib.nullcontext():
        if writable:
            recover_staging(out)
        manifest = load_manifest(out)
        return Verification(manifest, verify_manifest(out, manifest))


def require_folder(out: Path) -> None:
    """Read-only commands must not create the folder (or its lock file) they were pointed at."""
    if not out.is_dir():
        raise ToolkitError(
            f"{out}: no such folder; run `toolkit export --out {out}` first", ExitCode.ARTIFACT
        )


def checked_manifest(out: Path, verify: bool = True):
    """The manifest, refusing (exit 4) when a listed file changed, unless verify is off."""
    from toolkit.artifacts import load_manifest, verify_manifest

    manifest = load_manifest(out)
    problems = verify_manifest(out, manifest) if verify else []
    if problems:
        raise ToolkitError(
            f"{problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; re-export, or pass --no-verify",
            ExitCode.ARTIFACT,
        )
    return manifest


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
