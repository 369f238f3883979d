"""The export pipeline (`toolkit export`): each variant written, validated, then committed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit import interrupts
from toolkit.data import Dataset, Preprocessing, calibration_sample, load_data
from toolkit.data.checks import data_sha256, fit_to_model
from toolkit.errors import ExitCode, ToolkitError, warn
from toolkit.export.validation import VALIDATION_IMAGES, Validator, check_layer_names
from toolkit.export.variant import VariantExport
from toolkit.exporters import EXPORTERS, ExportContext, ExportVariant, ethos_u
from toolkit.exporters.base import committed_names
from toolkit.exporters.tflite_micro import c_identifier
from toolkit.figures import FigureProcess
from toolkit.formats.keras import OUTPUT_NAME, load_keras_model, serving_function
from toolkit.fsio import io_errors, read_json, sha256_file
from toolkit.process import recorded_versions
from toolkit.results import finite_or_none
from toolkit.runners.base import in_batches
from toolkit.store import (
    MANIFEST_NAME,
    Artifact,
    Manifest,
    OutputLock,
    Staging,
    load_manifest,
    recover_staging,
)

DEFAULT_OPSET = 17
DEFAULT_CALIB_SAMPLES = 500
BUILD_DIR = ".build"  # inside the staging folder: intermediates the variants share


def selected_variants(
    formats: list[str], npus: tuple[str, ...] = ethos_u.DEFAULT_NPUS
) -> list[ExportVariant]:
    """Variants of the requested formats ("all" for every one), in registry order, with the
    files those are made from (a C array needs its .tflite validated in the same export);
    Ethos-U files for the accelerators `npus`."""
    registry = {**EXPORTERS, "ethos-u": ethos_u.variants(tuple(npus))}
    wanted = set(registry) if "all" in formats else set(formats)
    chosen = [v for name, variants in registry.items() if name in wanted for v in variants]
    needed = {v.source for v in chosen if v.source}
    for variant in reversed(_all(registry)):  # a file's source comes before it
        if variant.filename in needed and variant.source:
            needed.add(variant.source)  # a Vela file's C array: the Vela file, the int8 file
    return [v for v in _all(registry) if v in chosen or v.filename in needed]


def _all(registry: dict) -> list[ExportVariant]:
    return [v for variants in registry.values() for v in variants]


REFERENCE_BATCH = 32  # Keras's own default: memory grows with it (MobileNetV2 0.35 at 256: +270 MB)


def reference_outputs(serving, inputs: np.ndarray) -> np.ndarray:
    """The Keras model's outputs every artifact is judged against, through the serving
    function the SavedModel and tf2onnx reuse: one trace for all three. model.predict would
    trace a predict function of its own (0.14 s against 0.08 s for the tutorial model)."""
    return in_batches(lambda batch: serving(batch)[OUTPUT_NAME].numpy(), inputs, REFERENCE_BATCH)


def check_labels_fit(labels: np.ndarray | None, classes: int, source: Path) -> None:
    """Class labels must index the model's outputs."""
    if labels is not None and len(labels) and int(labels.max()) >= classes:
        raise ToolkitError(
            f"{source}: labels go up to {int(labels.max())} but the model has {classes} outputs",
            ExitCode.DATASET,
        )


def check_class_names_fit(names: tuple[str, ...] | None, classes: int, source: Path) -> None:
    """One class name per model output, or predict and the report would index past them."""
    if names is not None and len(names) != classes:
        raise ToolkitError(
            f"{source}: {len(names)} class names for the model's {classes} outputs",
            ExitCode.DATASET,
        )


def manifest_json(manifest: Manifest) -> str:
    """The manifest as strict JSON: an unbounded tolerance (--max-accuracy-drop inf) is written
    as null, the "no bound" it means, never as a bare Infinity other programs cannot parse."""
    return json.dumps(finite_or_none(manifest.to_json()), indent=2, allow_nan=False)


def _kept_artifacts(out: Path, source_sha256: str, rewritten: set[str]) -> list[Artifact]:
    """Entries of the previous manifest that stay valid: same source model, not being rewritten."""
    if not (out / MANIFEST_NAME).is_file():
        return []
    try:
        previous = load_manifest(out)
    except ToolkitError:
        return []
    if previous.source_model_sha256 != source_sha256:
        return []
    return [a for a in previous.artifacts if a.name not in rewritten]


def _training_record(out: Path, source_sha256: str) -> dict:
    """Seed, determinism and dataset provenance from training/metrics.json, when that training
    produced the model being exported (not for a --model trained elsewhere)."""
    path = out / "training" / "metrics.json"
    if not path.exists():
        return {}
    try:
        metrics = read_json(path, ExitCode.ARTIFACT, "training record")
    except ToolkitError:
        return {}  # unreadable provenance is left out, never trusted
    if not isinstance(metrics, dict) or metrics.get("model_sha256") != source_sha256:
        return {}
    keys = (
        "seed",
        "arch",
        "epochs",
        "batch_size",
        "limit",
        "test_accuracy",
        "determinism",
        "dataset",
    )
    return {k: metrics[k] for k in keys if k in metrics}


def model_task(model, dataset: Dataset) -> str:
    """ "classification" when the output is class scores (N, K): the data has labels or class
    names for them, or the last layer is a softmax; "other" for anything else (an
    autoencoder's reconstruction, an embedding), judged by the generic figures only."""
    shape = tuple(model.outputs[0].shape)
    if len(shape) != 2 or shape[1] < 2:
        return "other"
    if dataset.labelled or dataset.class_names:
        return "classification"
    activation = getattr(model.layers[-1], "activation", None) if model.layers else None
    return "classification" if getattr(activation, "__name__", "") == "softmax" else "other"


def class_names_for(dataset: Dataset, model, task: str) -> list[str]:
    if task != "classification":
        return []
    if dataset.class_names:
        return list(dataset.class_names)
    return [str(i) for i in range(int(model.outputs[0].shape[1]))]


def input_layout(shape: tuple) -> str:
    """How a person reads the input: an image (HWC/HW) or a feature vector/map."""
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        return "HWC"
    return {1: "features", 2: "HW"}.get(len(shape), "tensor")


def data_record(dataset: Dataset, calibration_source: str, calibration_count: int) -> dict:
    """Which data export used, so compare and predict default to it and notice a changed file."""
    record = {
        "kind": dataset.kind,
        "path": str(Path(dataset.source).resolve()),
        "items": len(dataset.test_images),
        "labelled": dataset.labelled,
        "calibration": calibration_source,
        "calibration_samples": calibration_count,
    }
    if dataset.kind != "fashion-mnist":  # Fashion-MNIST carries its own published digests
        record["sha256"] = data_sha256(Path(dataset.source))
    return record


def export_artifacts(
    out: Path,
    model_path: Path | None = None,
    formats: list[str] = ("all",),
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    opset: int = DEFAULT_OPSET,
    validate: bool = True,
    data_dir: Path | None = None,
    on_artifact: Callable[[Artifact], None] = lambda artifact: None,
    data: str | Path | None = None,
    preprocessing: Preprocessing | None = None,
    mixed_precision: str = "auto",
    min_agreement: float | None = None,
    max_accuracy_drop: float | None = None,
    batch: int | None = 1,
    c_name: str | None = None,
    npus: tuple[str, ...] = ethos_u.DEFAULT_NPUS,
) -> Manifest:
    """Writes the requested artifacts and the manifest into `out`. A variant that cannot be
    built or misses its tolerance is left out (listed in `manifest.left_out` with the reason);
    the others are committed together, the manifest last. `batch` is the TFLite files' fixed
    batch (None: dynamic); `c_name` names the C arrays' symbols (default: the model's stem);
    `npus` are the Ethos-U accelerators the int8 file is compiled for."""
    model_path = Path(model_path or out / "model.keras")
    model = load_keras_model(model_path)
    check_layer_names(model, model_path)
    input_shape = tuple(model.inputs[0].shape[1:])
    source_sha256 = sha256_file(model_path)
    dataset = load_data(data, data_dir, image_shape=input_shape, preprocessing=preprocessing)
    for note in dataset.notes:
        warn(note)
    task = model_task(model, dataset)
    if task == "classification":
        classes = int(model.outputs[0].shape[-1])
        check_labels_fit(dataset.test_labels, classes, dataset.source)
        check_class_names_fit(dataset.class_names, classes, dataset.source)
    calibration, calibration_source = calibration_sample(dataset, calib_samples)
    calibration = fit_to_model(calibration, input_shape, dataset.source)
    inputs = fit_to_model(
        dataset.inputs(dataset.test_images[:VALIDATION_IMAGES]), input_shape, dataset.source
    )
    serving = serving_function(model)
    reference = reference_outputs(serving, inputs)
    labels = None if dataset.test_labels is None else dataset.test_labels[:VALIDATION_IMAGES]
    validator = Validator(
        inputs,
        reference,
        labels,
        task == "classification",
        validate,
        min_agreement,
        max_accuracy_drop,
    )
    variants = selected_variants(list(formats), npus)

    # A figure process draws the per-layer int8 plots beside the conversions. It starts now
    # when an int8 variant is selected, so that pyplot's import runs beside the conversions
    # too: started by the first int8 variant, export waited for its plots at the end. An
    # export without int8 starts none.
    drawing = any(variant.mixed_precision for variant in variants)
    with OutputLock(out), FigureProcess(lazy=not drawing) as figures:
        recover_staging(out)
        rewritten = committed_names(variants)
        kept = _kept_artifacts(out, source_sha256, rewritten)
        if not any(v.format == "keras" for v in [*kept, *variants]):
            variants = [*EXPORTERS["keras"], *variants]  # every manifest lists its reference
        with Staging(out) as staging:
            context = ExportContext(
                model,
                model_path,
                calibration,
                opset,
                staging.dir / BUILD_DIR,
                serving,
                batch,
                c_identifier(c_name or model_path.stem),
            )
            export = VariantExport(staging.dir, context, validator, mixed_precision, out, figures)
            artifacts, left_out = [], []
            for variant in variants:
                interrupts.check()
                try:
                    artifact = export.run(context.made_from_committed(variant))
                except ToolkitError as exc:
                    if exc.code != ExitCode.CONVERSION or variant.format == "keras":
                        raise
                    left_out.append({"artifact": variant.filename, "reason": str(exc)})
                    continue
                context.committed[variant.filename] = staging.dir / artifact.name
                artifacts.append(artifact)
                on_artifact(artifact)
            export.write_plots()
            written = [a.name for a in artifacts] + export.carry_quantization_records(out)
            written += ethos_u.carry_tables(staging.dir, out)
            manifest = Manifest(
                artifacts=kept + artifacts,
                class_names=class_names_for(dataset, model, task),
                source_model_sha256=source_sha256,
                versions=recorded_versions(),
                preprocessing={
                    **dataset.preprocess.to_json(),
                    "dtype": "float32",
                    "input_shape": list(input_shape),
                    "layout": input_layout(input_shape),
                },
                training={
                    **_training_record(out, source_sha256),
                    "calibration_samples": len(calibration),
                    "dataset_verified": dataset.verified,
                },
                task=task,
                data=data_record(dataset, calibration_source, len(calibration)),
                left_out=left_out,
                tolerances={
                    "min_agreement": validator.min_agreement,
                    "max_accuracy_drop": validator.max_accuracy_drop,
                    "mixed_precision": mixed_precision,
                },
            )
            with io_errors(out / MANIFEST_NAME):
                (staging.dir / MANIFEST_NAME).write_text(manifest_json(manifest))
            staging.commit([*sorted(written), MANIFEST_NAME], committed_names(variants))
    return manifest
