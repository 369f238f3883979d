"""The Python API: one function per command, each doing all the command does except printing.

`toolkit/__init__.py` re-exports these lazily, so `import toolkit` loads no TensorFlow. Every
function raises `ToolkitError` (with the CLI's exit code) and returns typed results.
"""

from __future__ import annotations

import contextlib
import os
import threading
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
    data: str | Path | None = None,
    data_dir: str | Path | None = None,
    on_progress: Callable | None = None,
):
    """Trains the tutorial architectures (default: the tutorial model on Fashion-MNIST; with
    `data`, for that data's input shape and classes); writes OUT/model.keras, OUT/training/ and
    OUT/plots/.

    Returns the `TrainResult` (model, history, test probabilities, metrics.json content).
    """
    from toolkit.artifacts import OutputLock
    from toolkit.model import TrainConfig, run_training

    out = Path(out)
    config = TrainConfig(arch=arch, epochs=epochs, batch_size=batch_size, seed=seed, limit=limit)
    with OutputLock(out):
        result = run_training(
            out, config, _path(data_dir), resume, on_progress=on_progress, data=data
        )
    return result


def export(
    out: str | Path = "exported",
    *,
    model: str | Path | None = None,
    formats: Sequence[str] = ("all",),
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    opset: int = DEFAULT_OPSET,
    validate: bool = True,
    data: str | Path | None = None,
    scale: float | None = None,
    offset: float = 0.0,
    mixed_precision: str = "auto",
    min_agreement: float | None = None,
    max_accuracy_drop: float | None = None,
    data_dir: str | Path | None = None,
    on_artifact: Callable | None = None,
):
    """Exports `model` (default OUT/model.keras) to `formats`, validates each artifact on `data`
    (default Fashion-MNIST; an .npz file or an image folder) and writes OUT/manifest.json;
    returns the `Manifest` (`left_out` lists variants that could not be built or validated).

    Model input = x * `scale` + `offset` (default scale: 1/255 for 8-bit data, else 1). An int8
    variant that misses `min_agreement` (default 0.97) or `max_accuracy_drop` (points, with
    labels) is rebuilt with its most damaging layers in float when `mixed_precision` is "auto".
    """
    if mixed_precision not in ("auto", "off"):
        raise ToolkitError(f"--mixed-precision {mixed_precision}: expected auto or off")
    from toolkit.data import Preprocessing
    from toolkit.exporting import export_artifacts
    from toolkit.process import import_tensorflow

    import_tensorflow()
    preprocessing = None if scale is None else Preprocessing(scale, offset)
    return export_artifacts(
        Path(out),
        _path(model),
        list(formats),
        calib_samples,
        opset,
        validate=validate,
        data_dir=_path(data_dir),
        on_artifact=on_artifact or (lambda artifact: None),
        data=data,
        preprocessing=preprocessing,
        mixed_precision=mixed_precision,
        min_agreement=min_agreement,
        max_accuracy_drop=max_accuracy_drop,
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
    data: str | Path | None = None,
    limit: int | None = None,
    data_dir: str | Path | None = None,
    on_row: Callable | None = None,
):
    """Measures every artifact of OUT/manifest.json in its runtime(s) on the data export used
    (or `data`; the first `limit` items), writes OUT/report/ and returns the `Report`;
    `report.gate["failures"]` lists what failed a gate. `max_memory` (MB, default half the RAM)
    stops a worker that grows past it."""
    from toolkit.artifacts import OutputLock, recover_staging
    from toolkit.compare.judging import gate_failures, load_baseline, recommend
    from toolkit.compare.measurement import MeasureSettings as MeasureConfig
    from toolkit.compare.pipeline import measure_rows
    from toolkit.figures import FigureProcess, pyplot
    from toolkit.process import default_max_memory_mb
    from toolkit.reporting import write_reports

    out = Path(out)
    if max_latency_regression is not None and baseline is None:
        raise ToolkitError("--max-latency-regression needs --baseline", ExitCode.USAGE)
    earlier = load_baseline(Path(baseline)) if baseline is not None else None
    require_folder(out)
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
        dataset = evaluation_data(manifest, data, _path(data_dir))
        labels = dataset.test_labels if manifest.task == "classification" else None
        measured = installed_runtimes(runtimes)
        # A figure process and a thread of this one import pyplot beside the runtimes' imports;
        # the two then share the report's figures.
        with FigureProcess() as figures:
            threading.Thread(target=pyplot, name="import pyplot").start()
            report = measure_rows(
                out,
                manifest,
                dataset.test_images[:limit],
                None if labels is None else labels[:limit],
                config,
                measured,
                on_row or (lambda row: None),
            )
            if earlier is not None:
                report = _with_baseline(report, earlier, baseline)
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
            write_reports(report, out / "report", dataset.test_images[:limit], figures)
    return report


def _with_baseline(report, earlier, baseline: str | Path):
    """`report` with its deltas against the `earlier` report (read from `baseline`), and a
    warning for each setting that differs between the two."""
    from toolkit.compare.judging import apply_baseline, baseline_mismatches

    report = apply_baseline(report, earlier, str(baseline))
    return report.with_(
        warnings=tuple(
            f"{baseline}: {difference}; latency deltas compare unlike settings"
            for difference in baseline_mismatches(report, earlier)
        )
    )


def report(out: str | Path = "exported", *, baseline: str | Path | None = None):
    """Re-renders OUT/report/ (Markdown, CSV, HTML, plots) from its report.json without measuring
    again, against `baseline` when given, keeping the flip galleries in OUT/report/flips/;
    returns the `Report` with its gate re-checked."""
    from toolkit.artifacts import OutputLock, recover_staging
    from toolkit.compare.judging import gate_failures, load_baseline
    from toolkit.reporting import write_reports

    out = Path(out)
    earlier = load_baseline(Path(baseline)) if baseline is not None else None
    require_folder(out)
    with OutputLock(out):
        recover_staging(out)
        stored_path = out / "report" / "report.json"
        if not stored_path.is_file():
            raise ToolkitError(
                f"{stored_path}: no such file; run `toolkit compare --out {out}` first",
                ExitCode.ARTIFACT,
            )
        stored = load_baseline(stored_path)  # the same checks as for a baseline
        if earlier is not None:
            stored = _with_baseline(stored, earlier, baseline)
        gate = stored.gate
        limits = gate.get("max_accuracy_drop"), gate.get("max_latency_regression")
        stored = stored.with_(gate={**gate, "failures": gate_failures(stored, *limits)})
        write_reports(stored, out / "report")
    return stored


@dataclass(frozen=True)
class Predictions:
    """What `predict` computed: one entry per input, in the order given."""

    names: list[str]
    labels: list[int | None]  # the true class where known (evaluation-set inputs)
    outputs: object  # numpy (N, ...): class probabilities for a classifier
    class_names: list[str]  # empty when the outputs are not class scores
    runtime: str
    warnings: list[str]

    @property
    def probabilities(self):
        return self.outputs


def predict(
    images: Sequence[str | Path] = (),
    *,
    out: str | Path = "exported",
    artifact: str | Path | None = None,
    index: Sequence[int] = (),
    plot: str | Path | None = None,
    threads: int = 1,
    verify: bool = True,
    data: str | Path | None = None,
    data_dir: str | Path | None = None,
) -> Predictions:
    """Runs any artifact (default OUT/model.keras) on image or .npy files and/or items of the
    evaluation data (`index`), preprocessed as the manifest says; writes the tutorial's
    prediction figure to `plot` when given."""
    import numpy as np

    from toolkit.artifacts import MANIFEST_NAME, check_replaceable, load_manifest
    from toolkit.compare.plan import manifest_input_shape, manifest_preprocessing
    from toolkit.data import CLASS_NAMES, Preprocessing
    from toolkit.figures import plot_image_predictions
    from toolkit.prediction import check_listed_checksum, load_image, predict_isolated, runtime_for
    from toolkit.runners import RUNNERS

    if not images and not index:
        raise ToolkitError("give image files, or --index N for test-set images", ExitCode.USAGE)
    path = Path(artifact) if artifact is not None else Path(out) / "model.keras"
    manifest = load_manifest(path.parent) if (path.parent / MANIFEST_NAME).is_file() else None
    if plot is not None:
        check_replaceable(Path(plot))  # before the work, not after it
    if verify:
        check_listed_checksum(path, manifest)
    runtime = runtime_for(path, manifest)
    if manifest is not None:
        shape, preprocessing = manifest_input_shape(manifest), manifest_preprocessing(manifest)
        task, class_names = manifest.task, list(manifest.class_names)
    else:  # a file on its own: the tutorial's conventions
        shape, preprocessing = (28, 28), Preprocessing(1 / 255)
        task, class_names = "classification", list(CLASS_NAMES)
    names, items, labels, warnings = [], [], [], []
    for image_path in map(Path, images):
        array, warning = load_image(image_path, shape, pixels=preprocessing.scale == 1 / 255)
        warnings += [warning] if warning else []
        names.append(str(image_path))
        items.append(_in_data_units(array, preprocessing))
        labels.append(None)
    if index:
        dataset = evaluation_data(manifest, data, _path(data_dir)) if manifest else None
        if dataset is None:
            from toolkit.data import load_data

            dataset = load_data(data, _path(data_dir))
        for i in index:
            if i >= len(dataset.test_images):
                raise ToolkitError(
                    f"--index {i}: the evaluation data has {len(dataset.test_images)} items",
                    ExitCode.USAGE,
                )
            names.append(f"test image {i}")
            items.append(dataset.test_images[i])
            labels.append(None if dataset.test_labels is None else int(dataset.test_labels[i]))
    batch = np.stack([np.asarray(item, dtype=np.float32) for item in items])
    inputs = preprocessing.apply(batch).reshape((-1, *shape))
    outputs = predict_isolated(RUNNERS[runtime], path, inputs, threads)
    if task != "classification":
        class_names = []
    if plot is not None and class_names:
        plot_image_predictions(batch, outputs, labels, class_names, Path(plot))
    elif plot is not None:
        raise ToolkitError(f"{plot}: --plot draws class scores; this model's outputs are not")
    return Predictions(names, labels, outputs, class_names, runtime, warnings)


def _in_data_units(array, preprocessing):
    """An .npy of floats in [0, 1] for a model fed pixels / 255 is already scaled: bring it
    back to pixel units so the manifest's preprocessing applies to every input alike."""
    import numpy as np

    if array.dtype.kind == "f" and preprocessing.scale == 1 / 255 and array.max() <= 1:
        return np.clip(array * 255, 0, 255)
    return array


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


def evaluation_data(manifest, data: str | Path | None = None, data_dir: Path | None = None):
    """The evaluation split of the data export recorded in the manifest (or `data`), read for
    the model's input shape; a recorded file that changed since export is a warning."""
    from toolkit.compare.plan import manifest_input_shape, manifest_preprocessing
    from toolkit.data import FASHION_MNIST, load_data
    from toolkit.data.checks import data_sha256, fit_to_model
    from toolkit.errors import warn

    recorded = manifest.data
    if data is None and recorded.get("kind") not in (None, FASHION_MNIST):
        data = recorded["path"]
    dataset = load_data(
        data,
        data_dir,
        manifest_input_shape(manifest),
        manifest_preprocessing(manifest),
        train=False,
    )
    fit_to_model(dataset.test_images[:1], manifest_input_shape(manifest), dataset.source)
    for note in dataset.notes:
        warn(note)
    digest = recorded.get("sha256")
    same_file = digest and Path(dataset.source).resolve() == Path(recorded["path"])
    if same_file and data_sha256(Path(dataset.source)) != digest:
        warn(f"{dataset.source}: changed since export (sha256 differs from the manifest)")
    return dataset


def installed_runtimes(requested: Sequence[str] | None = None) -> list[str]:
    """The requested runtimes (default: every registered one) whose package is installed; each
    missing one is a warning saying how to install it, never a crash."""
    from toolkit.errors import warn
    from toolkit.runners import RUNNERS, missing_runtime

    installed = []
    for runtime in requested or RUNNERS:
        if (problem := missing_runtime(runtime)) is None:
            installed.append(runtime)
        else:
            warn(problem)
    return installed


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
