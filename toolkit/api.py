"""The Python API: one function per command, each doing all the command does except printing.

`toolkit/__init__.py` re-exports these lazily, so `import toolkit` loads no TensorFlow. Each
command's keyword arguments are the fields of its options class in `toolkit.options` (the CLI's
options, same names and defaults); they are checked as the options object is built, and the
`run_*` function the CLI calls too does the work. Every function raises `ToolkitError` (with the
CLI's exit code) and returns typed results; scratch files live in a private temp folder that is
removed when the call returns.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError
from toolkit.options import (
    CheckedOptions,
    CompareOptions,
    ExportOptions,
    PredictOptions,
    ReportOptions,
    TrainOptions,
    VerifyOptions,
    check_choices,
)


def _in_private_tempdir(function):
    """Runs an API call with TMPDIR pointing at a private folder it removes afterwards, so
    neither TensorFlow's generated files nor a converter's scratch outlive the call."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        from toolkit.scratch import private_tempdir

        with private_tempdir():
            return function(*args, **kwargs)

    return wrapper


def train(out: str | Path = TrainOptions.out, *, on_progress: Callable | None = None, **options):
    """Trains the tutorial architectures (default: the tutorial model on Fashion-MNIST; with
    `data`, for that data's input shape and classes); writes OUT/model.keras, OUT/training/ and
    OUT/plots/. Options: `TrainOptions`' fields.

    Returns the `TrainResult` (model, history, test probabilities, metrics.json content).
    """
    return _called("train", dict(out=out, **options), on_progress)


@_in_private_tempdir
def run_train(options: TrainOptions, on_progress: Callable | None = None):
    """`train` on an options object."""
    from toolkit.model import ARCHITECTURES, TrainConfig, run_training
    from toolkit.store import OutputLock

    check_choices(options, "arch", ARCHITECTURES)
    config = TrainConfig(**options.shared_with(TrainConfig))
    with OutputLock(options.out):
        return run_training(
            options.out,
            config,
            options.data_dir,
            options.resume,
            on_progress=on_progress,
            data=options.data,
            figures=options.figures,
        )


def export(out: str | Path = ExportOptions.out, *, on_artifact: Callable | None = None, **options):
    """Exports `model` (default OUT/model.keras) to `formats`, validates each artifact on `data`
    (default Fashion-MNIST; an .npz file or an image folder) and writes OUT/manifest.json;
    returns the `Manifest` (`left_out` lists variants that could not be built or validated).

    Model input = x * `scale` + `offset` (default scale: 1/255 for 8-bit data, else 1). An int8
    variant that misses `min_agreement` (default 0.97) or `max_accuracy_drop` (points, with
    labels) is rebuilt with its most damaging layers in float when `mixed_precision` is "auto".
    Options: `ExportOptions`' fields.
    """
    return _called("export", dict(out=out, **options), on_artifact)


@_in_private_tempdir
def run_export(options: ExportOptions, on_artifact: Callable | None = None):
    """`export` on an options object."""
    from toolkit.exporters import EXPORTERS
    from toolkit.exporters.ethos_u import ACCELERATORS
    from toolkit.exporting.pipeline import export_artifacts

    check_choices(options, "formats", ["all", *EXPORTERS])
    check_choices(options, "npus", ACCELERATORS)
    return export_artifacts(options, on_artifact or (lambda artifact: None))


def compare(out: str | Path = CompareOptions.out, *, on_row: Callable | None = None, **options):
    """Measures every artifact of OUT/manifest.json in its runtime(s) on the data export used
    (or `data`; the first `limit` items), writes OUT/report/ and returns the `Report`;
    `report.gate["failures"]` lists what failed a gate. `max_memory` (MB, default half the RAM)
    stops a worker that grows past it. Options: `CompareOptions`' fields."""
    return _called("compare", dict(out=out, **options), on_row)


@_in_private_tempdir
def run_compare(options: CompareOptions, on_row: Callable | None = None):
    """`compare` on an options object."""
    from toolkit.comparing.judging import load_baseline
    from toolkit.comparing.scoring import evaluation_labels
    from toolkit.figures import FigureProcess, pyplot
    from toolkit.reporting import write_reports
    from toolkit.runners import RUNNERS
    from toolkit.store import OutputLock, recover_staging

    check_choices(options, "runtimes", RUNNERS)
    out = options.out
    earlier = load_baseline(options.baseline) if options.baseline is not None else None
    require_folder(out)
    with OutputLock(out):
        recover_staging(out)
        manifest = checked_manifest(out, options.verify)
        dataset = evaluation_data(manifest, options.data, options.data_dir)
        inputs = dataset.test_images[: options.limit]
        labels = evaluation_labels(dataset, manifest, options.limit)
        measured = installed_runtimes(options.runtimes)
        # A figure process and a thread of this one import pyplot beside the runtimes' imports;
        # the two then share the report's figures.
        with FigureProcess(lazy=not options.figures) as figures:
            if options.figures:
                threading.Thread(target=pyplot, name="import pyplot").start()
            report = _measured_report(options, manifest, inputs, labels, measured, on_row)
            if earlier is not None:
                report = _with_baseline(report, earlier, options.baseline)
            report = _judged(report, options)
            write_reports(report, out / "report", inputs, figures, draw=options.figures)
    return report


def _measured_report(options: CompareOptions, manifest, inputs, labels, runtimes, on_row):
    """Every (artifact, runtime) row measured as `options` says."""
    from toolkit.comparing.measurement import MeasureSettings as MeasureConfig
    from toolkit.comparing.pipeline import measure_rows
    from toolkit.process import default_max_memory_mb

    config = MeasureConfig(
        **options.shared_with(MeasureConfig),
        timeout_seconds=options.timeout,
        max_memory_mb=options.max_memory or default_max_memory_mb(),
    )
    return measure_rows(
        options.out,
        manifest,
        inputs,
        labels,
        config,
        runtimes,
        on_row or (lambda row: None),
        devices=options.devices,
        ssh_config=options.ssh_config,
        cluster=options.cluster,
    )


def _judged(report, options: CompareOptions):
    """`report` with its recommendation and the gate's verdict."""
    from toolkit.comparing.judging import gate_failures, recommend

    best = recommend(report)
    by_device = {}
    for device in dict.fromkeys(row.device_name for row in report.rows if row.device):
        pick = recommend(report, device=device)
        if device != "local" and pick is not None:
            by_device[device] = [pick.artifact, pick.runtime]
    drop, growth = options.max_accuracy_drop, options.max_latency_regression
    outside = options.fail_outside_tolerance
    return report.with_(
        recommended=best and best.artifact,
        recommended_runtime=best and best.runtime,
        recommended_by_device=by_device,
        gate={
            "max_accuracy_drop": drop,
            "max_latency_regression": growth,
            "fail_outside_tolerance": outside,
            "failures": gate_failures(report, drop, growth, outside),
        },
    )


def _with_baseline(report, earlier, baseline: str | Path):
    """`report` with its deltas against the `earlier` report (read from `baseline`), and a
    warning for each setting that differs between the two."""
    from toolkit.comparing.judging import apply_baseline, baseline_mismatches

    report = apply_baseline(report, earlier, str(baseline))
    return report.with_(
        warnings=tuple(
            f"{baseline}: {difference}; latency deltas compare unlike settings"
            for difference in baseline_mismatches(report, earlier)
        )
    )


def report(out: str | Path = ReportOptions.out, **options):
    """Re-renders OUT/report/ (Markdown, CSV, HTML, plots) from its report.json without measuring
    again, against `baseline` when given, keeping the flip galleries in OUT/report/flips/;
    returns the `Report` with its gate re-checked."""
    return _called("report", dict(out=out, **options))


@_in_private_tempdir
def run_report(options: ReportOptions):
    """`report` on an options object."""
    from toolkit.comparing.judging import gate_failures, load_baseline
    from toolkit.report_schema import load_stored_report
    from toolkit.reporting import write_reports
    from toolkit.store import OutputLock, recover_staging

    out, baseline = options.out, options.baseline
    earlier = load_baseline(baseline) if baseline is not None else None
    require_folder(out)
    with OutputLock(out):
        recover_staging(out)
        stored = load_stored_report(out)
        if earlier is not None:
            stored = _with_baseline(stored, earlier, baseline)
        gate = stored.gate
        limits = gate.get("max_accuracy_drop"), gate.get("max_latency_regression")
        outside = gate.get("fail_outside_tolerance", False)
        stored = stored.with_(gate={**gate, "failures": gate_failures(stored, *limits, outside)})
        write_reports(stored, out / "report", draw=options.figures)
    return stored


@dataclass(frozen=True)
class Predictions:
    """What `predict` computed: one entry per input, in the order given."""

    names: list[str]
    labels: list[int | None]  # the true class where known (evaluation-set inputs)
    # numpy (N, ...): class probabilities for a classifier; for a model with several outputs,
    # the arrays by output name in the model's order
    outputs: object
    class_names: list[str]  # empty when the outputs are not class scores
    runtime: str
    warnings: list[str]
    heads: list[dict] = field(default_factory=list)  # each output: name, kind, class_names

    @property
    def probabilities(self):
        return self.outputs


def predict(images: Sequence[str | Path] = PredictOptions.images, **options) -> Predictions:
    """Runs any artifact (default OUT/model.keras) on image or .npy files and/or items of the
    evaluation data (`index`), preprocessed as the manifest says; writes the tutorial's
    prediction figure to `plot` when given. Options: `PredictOptions`' fields."""
    return _called("predict", dict(images=images, **options))


@dataclass(frozen=True)
class _Model:
    """What predict needs to know about the artifact's model: from its manifest, or the
    tutorial's conventions for a file on its own."""

    manifest: object
    shape: tuple
    preprocessing: object
    class_names: list[str]


def _model_facts(path: Path) -> _Model:
    from toolkit.comparing.plan import manifest_input_shape, manifest_preprocessing
    from toolkit.data import CLASS_NAMES, Preprocessing
    from toolkit.store import MANIFEST_NAME, load_manifest

    if not (path.parent / MANIFEST_NAME).is_file():
        return _Model(None, (28, 28), Preprocessing(1 / 255), list(CLASS_NAMES))
    manifest = load_manifest(path.parent)
    classes = list(manifest.class_names) if manifest.task == "classification" else []
    return _Model(
        manifest, manifest_input_shape(manifest), manifest_preprocessing(manifest), classes
    )


@_in_private_tempdir
def run_predict(options: PredictOptions) -> Predictions:
    """`predict` on an options object."""
    from toolkit.figures import plot_image_predictions
    from toolkit.fsio import check_replaceable
    from toolkit.prediction import (
        check_listed_checksum,
        outputs_by_head,
        predict_isolated,
        prediction_inputs,
        runtime_for,
        several_inputs,
    )
    from toolkit.runners import RUNNERS

    path = options.artifact if options.artifact is not None else options.out / "model.keras"
    model = _model_facts(path)
    if options.plot is not None:
        check_replaceable(options.plot)  # before the work, not after it
    if options.verify:
        check_listed_checksum(path, model.manifest)
    runtime = runtime_for(path, model.manifest)
    names, items, labels, warnings = _image_items(options.images, model)
    for name, item, label in _indexed_items(options, model.manifest):
        names.append(name)
        items.append(item)
        labels.append(label)
    several = several_inputs(model.manifest)
    batch, inputs = prediction_inputs(items, model.shape, model.preprocessing, several)
    named = predict_isolated(RUNNERS[runtime], path, inputs, options.threads)
    heads, outputs = outputs_by_head(model.manifest, named)
    if options.plot is not None and (not model.class_names or len(heads) > 1):
        raise ToolkitError(
            f"{options.plot}: --plot draws class scores; this model's outputs are not"
        )
    if options.plot is not None:
        plot_image_predictions(batch, outputs, labels, model.class_names, options.plot)
    return Predictions(names, labels, outputs, model.class_names, runtime, warnings, heads)


def _image_items(images: Sequence[Path], model: _Model):
    """(names, items, labels, warnings) of the image or .npy files, in pixel units."""
    from toolkit.prediction import check_images_fit, load_image

    names, items, labels, warnings = [], [], [], []
    check_images_fit(images, model.manifest)
    for image_path in images:
        pixels = model.preprocessing.scale == 1 / 255
        array, warning = load_image(image_path, model.shape, pixels=pixels)
        warnings += [warning] if warning else []
        names.append(str(image_path))
        items.append(_in_data_units(array, model.preprocessing))
        labels.append(None)
    return names, items, labels, warnings


def _indexed_items(options: PredictOptions, manifest):
    """(name, item, label) of each evaluation-data item `options.index` asks for."""
    if not options.index:
        return
    if manifest is not None:
        dataset = evaluation_data(manifest, options.data, options.data_dir)
    else:
        from toolkit.data import load_data

        dataset = load_data(options.data, options.data_dir)
    for i in options.index:
        if i >= len(dataset.test_images):
            raise ToolkitError(
                f"--index {i}: the evaluation data has {len(dataset.test_images)} items",
                ExitCode.USAGE,
            )
        label = None if dataset.test_labels is None else int(dataset.test_labels[i])
        yield f"test image {i}", dataset.test_images[i], label


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


def verify(out: str | Path = VerifyOptions.out) -> Verification:
    """Recomputes every checksum of OUT/manifest.json (a read-only folder is checked, not
    repaired)."""
    return _called("verify", dict(out=out))


@_in_private_tempdir
def run_verify(options: VerifyOptions) -> Verification:
    """`verify` on an options object."""
    from toolkit.store import OutputLock, load_manifest, recover_staging, verify_manifest

    out = options.out
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
    from toolkit.comparing.plan import manifest_input_shape, manifest_preprocessing
    from toolkit.data import FASHION_MNIST, load_data
    from toolkit.data.checks import data_sha256, fit_to_model
    from toolkit.data.named import manifest_data
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
    dataset = manifest_data(dataset, manifest)
    if dataset.test_images.dtype.names is None:
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
    from toolkit.store import load_manifest, verify_manifest

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


# Every command: its options class and the function that runs it on an options object. The
# keyword API above and the CLI both go through this table.
COMMANDS: dict[str, tuple[type[CheckedOptions], Callable]] = {
    "train": (TrainOptions, run_train),
    "export": (ExportOptions, run_export),
    "compare": (CompareOptions, run_compare),
    "report": (ReportOptions, run_report),
    "predict": (PredictOptions, run_predict),
    "verify": (VerifyOptions, run_verify),
}


def _called(command: str, keywords: dict, *callback):
    """`command` run on the options its keyword arguments build (an unknown one is exit 2)."""
    options_class, run = COMMANDS[command]
    return run(options_class.from_keywords(**keywords), *callback)
