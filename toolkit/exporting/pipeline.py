"""The export pipeline (`toolkit export`): each variant written, validated, then committed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from toolkit import interrupts
from toolkit.arrays import count
from toolkit.data import Dataset, Preprocessing, calibration_sample, load_data
from toolkit.data.checks import data_sha256
from toolkit.data.named import fit_inputs
from toolkit.errors import ExitCode, ToolkitError, warn
from toolkit.exporters import EXPORTERS, ExportContext, ExportVariant, ethos_u
from toolkit.exporters.base import committed_names
from toolkit.exporters.conversion import converter_for
from toolkit.exporters.tflite_micro import c_identifier
from toolkit.exporting.model_io import (
    ModelIO,
    describe_model,
    head_labels,
    manifest_inputs,
    model_data,
    model_inputs,
    reference_outputs,
)
from toolkit.exporting.validation import VALIDATION_IMAGES, Validator, check_layer_names
from toolkit.exporting.variant import VariantExport
from toolkit.figures import FigureProcess
from toolkit.formats.keras import load_keras_model, serving_function
from toolkit.fsio import io_errors, read_json, sha256_file
from toolkit.options import ExportOptions
from toolkit.process import import_tensorflow, recorded_versions
from toolkit.results import finite_or_none
from toolkit.store import (
    MANIFEST_NAME,
    Artifact,
    Manifest,
    OutputLock,
    Staging,
    load_manifest,
    recover_staging,
)

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


def fixed_model(model, input_shapes: dict, path: Path):
    """The model with free input dimensions fixed by `--input-shape`; without it, a model with
    free dimensions is refused naming the option (exit 4)."""
    from toolkit.formats.keras import check_model_io, free_input_dims, with_input_shapes

    if input_shapes:
        return with_input_shapes(model, input_shapes, path)
    if free_input_dims(model):
        check_model_io(model, path)
    return model


def preprocessing_record(dataset: Dataset, io: ModelIO) -> dict:
    """The manifest's `preprocessing`: the first input's (every input's is in `inputs`)."""
    first = manifest_inputs(dataset, io)[0]
    return {
        **first["preprocessing"],
        "dtype": "float32",
        "input_shape": first["shape"][1:],
        "layout": first["layout"],
    }


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
    options: ExportOptions, on_artifact: Callable[[Artifact], None] = lambda artifact: None
) -> Manifest:
    """Writes the artifacts `options` asks for and the manifest into `options.out`. A variant
    that cannot be built or misses its tolerance is left out (listed in `manifest.left_out` with
    the reason); the others are committed together, the manifest last."""
    out = options.out
    preprocessing = None if options.scale is None else Preprocessing(options.scale, options.offset)
    variants = selected_variants(list(options.formats), options.npus)
    with converter_for(variants) as converter:
        source = _read_source(
            options.model or out / "model.keras",
            (options.data, options.data_dir, preprocessing, options.calib_samples),
            options.parsed_input_shapes(),
            (options.validate, options.min_agreement, options.max_accuracy_drop),
        )
        # A figure process draws the per-layer int8 plots beside the conversions. It starts now
        # when an int8 variant is selected, so that pyplot's import runs beside the conversions
        # too: started by the first int8 variant, export waited for its plots at the end. An
        # export without int8, or without figures, starts none.
        drawing = options.figures and any(variant.mixed_precision for variant in variants)
        with OutputLock(out), FigureProcess(lazy=not drawing) as figures:
            recover_staging(out)
            kept = _kept_artifacts(out, source.sha256, committed_names(variants))
            if not any(v.format == "keras" for v in [*kept, *variants]):
                variants = [*EXPORTERS["keras"], *variants]  # every manifest lists its reference
            with Staging(out) as staging:
                context = ExportContext(
                    source.model, source.path, source.calibration, options.opset,
                    staging.dir / BUILD_DIR, source.serving, options.fixed_batch,
                    c_identifier(options.c_name or source.path.stem), converter,
                )  # fmt: skip
                export = VariantExport(
                    staging.dir, context, source.validator, options.mixed_precision, out,
                    figures if drawing else None,
                )  # fmt: skip
                artifacts, left_out = _export_each(export, context, variants, on_artifact)
                export.write_plots()
                written = [a.name for a in artifacts] + export.carry_quantization_records(out)
                written += ethos_u.carry_tables(staging.dir, out)
                manifest = _manifest(
                    source, out, kept + artifacts, left_out, options.mixed_precision
                )
                with io_errors(out / MANIFEST_NAME):
                    (staging.dir / MANIFEST_NAME).write_text(manifest_json(manifest))
                staging.commit([*sorted(written), MANIFEST_NAME], committed_names(variants))
    return manifest


@dataclass
class _Source:
    """The model to export and what is read for it before any variant is written."""

    model: object
    path: Path
    sha256: str
    dataset: Dataset
    io: ModelIO
    calibration: object
    calibration_source: str
    serving: object
    validator: Validator


def _read_source(model_path: Path, reading: tuple, input_shapes: dict, judging: tuple) -> _Source:
    """The model (checked, free dimensions fixed), its data, calibration sample, serving
    function and reference outputs; `reading` is (data, data_dir, preprocessing, calibration
    samples), `judging` (validate, min_agreement, max_accuracy_drop)."""
    data, data_dir, preprocessing, calib_samples = reading
    import_tensorflow()  # frozen (see its docstring); converter_for may have imported it first
    model = load_keras_model(model_path)
    check_layer_names(model, model_path)
    model = fixed_model(model, input_shapes, model_path)
    source_sha256 = sha256_file(model_path)
    image_shape = tuple(model.inputs[0].shape[1:])
    dataset = load_data(data, data_dir, image_shape=image_shape, preprocessing=preprocessing)
    for note in dataset.notes:
        warn(note)
    dataset = model_data(dataset, model)
    io = describe_model(model, dataset)
    labels = head_labels(dataset, io, VALIDATION_IMAGES)
    calibration, calibration_source = calibration_sample(dataset, calib_samples)
    calibration = fit_inputs(calibration, io.inputs, dataset.source)
    inputs = model_inputs(dataset, dataset.test_images[:VALIDATION_IMAGES], io)
    serving = serving_function(model)
    reference = reference_outputs(serving, inputs, io)
    validator = Validator(inputs, reference, labels, io, *judging)
    return _Source(
        model, model_path, source_sha256, dataset, io, calibration, calibration_source, serving,
        validator,
    )  # fmt: skip


def _export_each(export: VariantExport, context, variants, on_artifact) -> tuple[list, list]:
    """Each variant written and judged in turn: (artifacts, left out with the reason). A
    conversion failure leaves the variant out; anything else, or the reference failing, stops
    the export."""
    artifacts, left_out = [], []
    context.planned = {variant.filename for variant in variants}
    for variant in variants:
        interrupts.check()
        try:
            artifact = export.run(context.made_from_committed(variant))
        except ToolkitError as exc:
            if exc.code != ExitCode.CONVERSION or variant.format == "keras":
                raise
            left_out.append({"artifact": variant.filename, "reason": str(exc)})
            continue
        context.committed[variant.filename] = export.folder / artifact.name
        artifacts.append(artifact)
        on_artifact(artifact)
    return artifacts, left_out


def _manifest(source: _Source, out: Path, artifacts, left_out, mixed_precision: str) -> Manifest:
    dataset, io, calibration = source.dataset, source.io, source.calibration
    return Manifest(
        artifacts=artifacts,
        class_names=io.outputs[0]["class_names"] if len(io.outputs) == 1 else [],
        source_model_sha256=source.sha256,
        versions=recorded_versions(),
        preprocessing=preprocessing_record(dataset, io),
        training={
            **_training_record(out, source.sha256),
            "calibration_samples": count(calibration),
            "dataset_verified": dataset.verified,
        },
        task=io.task,
        data=data_record(dataset, source.calibration_source, count(calibration)),
        left_out=left_out,
        tolerances={
            "min_agreement": source.validator.min_agreement,
            "max_accuracy_drop": source.validator.max_accuracy_drop,
            "mixed_precision": mixed_precision,
        },
        inputs=manifest_inputs(dataset, io),
        outputs=io.outputs,
    )
