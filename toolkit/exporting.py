"""The export pipeline (`toolkit export`): each variant written, validated, then committed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from toolkit import interrupts
from toolkit.data import Dataset, Preprocessing, calibration_sample, load_data
from toolkit.data.checks import data_sha256, fit_to_model
from toolkit.errors import ExitCode, ToolkitError, first_line, warn
from toolkit.exporters import EXPORTERS, ExportContext, ExportVariant, Tolerance, ethos_u
from toolkit.exporters.base import committed_names
from toolkit.exporters.tflite_micro import c_identifier
from toolkit.figures import FigureProcess
from toolkit.formats.keras import OUTPUT_NAME, load_keras_model, serving_function
from toolkit.fsio import disk_problem, io_errors, read_json, sha256_file, sha256_path, size_bytes
from toolkit.metrics import compare_outputs
from toolkit.process import quiet_stderr, recorded_versions
from toolkit.quantization.records import worst_layers_message
from toolkit.results import finite_or_none
from toolkit.runners import RUNNERS
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

VALIDATION_IMAGES = 1000
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


@dataclass(frozen=True)
class Judgement:
    """An artifact loaded in its runtime: its I/O, the comparator's figures and what missed."""

    figures: dict
    problems: list[str]
    inputs: list[dict]
    outputs: list[dict]


@dataclass(frozen=True)
class Validator:
    """Judges artifacts against the reference on the validation inputs, with the comparator
    compare uses; `min_agreement` and `max_accuracy_drop` are the user's bounds for the
    variants judged by class agreement (the int8 ones)."""

    inputs: np.ndarray
    reference: np.ndarray
    labels: np.ndarray | None
    class_scores: bool
    enabled: bool = True
    min_agreement: float | None = None
    max_accuracy_drop: float | None = None

    def tolerance(self, variant: ExportVariant) -> Tolerance:
        bounds = variant.tolerance
        if bounds.min_agreement is None:
            return bounds
        if self.min_agreement is not None:
            bounds = replace(bounds, min_agreement=self.min_agreement)
        return replace(bounds, max_accuracy_drop=self.max_accuracy_drop)

    @property
    def reference_accuracy(self) -> float | None:
        if self.labels is None or not self.class_scores:
            return None
        return float(np.mean(np.argmax(self.reference, axis=1) == self.labels))

    def judge(self, variant: ExportVariant, path: Path) -> Judgement:
        if variant.runtime is None:
            return Judgement({}, [], [], [])
        with quiet_stderr(), RUNNERS[variant.runtime](path) as runner:
            inputs_detail, outputs_detail = runner.io_details()
            if not self.enabled:
                return Judgement({}, [], inputs_detail, outputs_detail)
            outputs = runner.predict(self.inputs)
        tolerance = self.tolerance(variant)
        labels = self.labels if self.class_scores else None
        try:
            comparison = compare_outputs(outputs, self.reference, labels, self.class_scores)
        except ValueError as exc:  # NaN, infinity or a wrong shape
            return Judgement({}, [str(exc)], inputs_detail, outputs_detail)
        figures = {
            "images": len(self.inputs),
            **{k: v for k, v in comparison.to_json().items() if v is not None},
            "tolerance": tolerance.to_json(),
        }
        problems = tolerance.failures(comparison, self.reference_accuracy)
        return Judgement(finite_or_none(figures), problems, inputs_detail, outputs_detail)


REFERENCE_BATCH = 32  # Keras's own default: memory grows with it (MobileNetV2 0.35 at 256: +270 MB)


def reference_outputs(serving, inputs: np.ndarray) -> np.ndarray:
    """The Keras model's outputs every artifact is judged against, through the serving
    function the SavedModel and tf2onnx reuse: one trace for all three. model.predict would
    trace a predict function of its own (0.14 s against 0.08 s for the tutorial model)."""
    return in_batches(lambda batch: serving(batch)[OUTPUT_NAME].numpy(), inputs, REFERENCE_BATCH)


def validation_failure(variant_filename: str, count: int, problems: list[str]) -> ToolkitError:
    return ToolkitError(
        f"{variant_filename}: validation against the Keras reference failed on {count} inputs: "
        f"{'; '.join(problems)} (use --no-validate to keep it)",
        ExitCode.CONVERSION,
    )


# TensorFlow's own patterns (tensorflow/python/framework/ops.py): the model's name opens a root
# name scope when traced, each layer's a nested one.
_ROOT_SCOPE = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*")
_NESTED_SCOPE = re.compile(r"[A-Za-z0-9_.\\/>-]*")


def check_layer_names(model, path: Path) -> None:
    """Names TensorFlow cannot trace ("$", "<", a space) are refused naming the layer. Renaming
    them for the trace would not do: the Keras copy, loaded as it is, fails the same way."""
    pending = [(model, _ROOT_SCOPE)]
    while pending:
        layer, pattern = pending.pop()
        if not pattern.fullmatch(layer.name):
            raise ToolkitError(
                f"{path}: layer {layer.name!r} has a name TensorFlow refuses (letters, digits and "
                "_ . - / > \\ only): rename it and save the model again",
                ExitCode.ARTIFACT,
            )
        pending += [(inner, _NESTED_SCOPE) for inner in getattr(layer, "layers", ())]


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
            export = _VariantExport(staging.dir, context, validator, mixed_precision, out, figures)
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
            staging.commit([*sorted(written), MANIFEST_NAME])
    return manifest


QUANTIZATION_DIR = "quantization"  # per-layer int8 error: <artifact>.json and .png


class _VariantExport:
    """Writes one variant into staging and judges it; an int8 variant also writes its per-layer
    error and, when it misses its tolerance with mixed precision on, is replaced by a model
    with the most damaging layers kept in float."""

    def __init__(self, folder: Path, context, validator: Validator, mixed: str, out: Path, figures):
        self.folder, self.context, self.validator = folder, context, validator
        self.mixed, self.out = mixed, out
        self.figures, self.plots = figures, []  # per-layer plots, drawn in a figure process

    def write_plots(self) -> None:
        """Waits for the per-layer plots and writes them beside their records."""
        from toolkit.figures import write_png

        for path, png in zip(self.plots, self.figures.pngs(), strict=True):
            write_png(png, path)

    def run(self, variant: ExportVariant) -> Artifact:
        target = self.folder / variant.filename
        try:
            self._write(variant, target)
            errors = self._layer_errors(variant)
            judged = self.validator.judge(variant, target)
            if not judged.problems:
                return self._artifact(variant, target, judged, self._record(variant, errors))
            count = len(self.validator.inputs)
            if errors is None or self.mixed == "off":
                worst = [worst_layers_message(errors)] if errors is not None else []
                raise validation_failure(variant.filename, count, [*judged.problems, *worst])
            artifact = self._mixed(variant, target, judged, errors)
        except ToolkitError:
            _remove(target)
            raise
        _remove(target)  # replaced by the mixed model
        return artifact

    def _write(self, variant: ExportVariant, target: Path) -> None:
        """Runs the converter; its own error becomes a one-line exit-5 reason."""
        try:
            with quiet_stderr():
                variant.write(self.context.model, target, self.context)
        except ToolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - converters raise anything
            if disk := disk_problem(exc):
                name = self.out / variant.filename
                raise ToolkitError(f"{name}: cannot write: {disk}", ExitCode.IO) from None
            raise ToolkitError(
                f"{variant.filename}: conversion failed: {first_line(exc)}", ExitCode.CONVERSION
            ) from None

    def _layer_errors(self, variant: ExportVariant):
        """The variant's per-layer int8 error, written as OUT/quantization/<artifact>.json and
        .png (None for a variant that is not int8)."""
        if variant.mixed_precision is None:
            return None
        from toolkit.quantization.records import layer_errors_figure, layer_errors_json

        try:
            with quiet_stderr():
                errors = variant.mixed_precision.debugger(self.context).errors
        except Exception as exc:  # noqa: BLE001 - a debugger failing costs the record, not the file
            warn(f"{variant.filename}: no per-layer error ({first_line(exc)})")
            return None
        folder = self.folder / QUANTIZATION_DIR
        folder.mkdir(exist_ok=True)
        record = folder / f"{variant.filename}.json"
        record.write_text(json.dumps(finite_or_none(layer_errors_json(variant.filename, errors))))
        self.figures.draw(layer_errors_figure, errors, variant.filename)
        self.plots.append(record.with_suffix(".png"))
        if variant.format == "tflite":
            from toolkit.quantization.node_data import NODE_DATA_SUFFIX, write_node_data

            node_data = folder / f"{variant.filename}{NODE_DATA_SUFFIX}"
            write_node_data(errors, self.folder / variant.filename, node_data)
        return errors

    def _record(self, variant: ExportVariant, errors, **more) -> dict:
        if errors is None:
            return {}
        from toolkit.quantization.node_data import MISSING, NODE_DATA_SUFFIX

        record = {"per_layer": f"{QUANTIZATION_DIR}/{variant.filename}.json", **more}
        node_data = f"{QUANTIZATION_DIR}/{variant.filename}{NODE_DATA_SUFFIX}"
        if (self.folder / node_data).is_file():
            record["node_data"] = node_data  # Model Explorer: model-explorer FILE --node_data_paths
        elif variant.format == "tflite":
            record["node_data_skipped"] = MISSING
        return record

    def _mixed(self, variant: ExportVariant, target: Path, judged: Judgement, errors) -> Artifact:
        """Keeps the most damaging layers in float, one more at a time, until the tolerance
        holds; the full-integer file is left out (a mixed model must never carry its name)."""
        from toolkit.quantization.search import search_float_layers

        spec = variant.mixed_precision
        mixed = replace(variant, variant="mixed_int8", filename=spec.filename)
        path = self.folder / spec.filename
        debugger = spec.debugger(self.context)

        def build(float_layers):
            if not float_layers:
                return target
            try:
                with quiet_stderr():
                    spec.build(debugger, tuple(float_layers), path)
            except Exception as exc:  # noqa: BLE001 - e.g. a debugger left no layer in int8
                path.unlink(missing_ok=True)
                reason = (
                    f"unreachable: still failing with {', '.join(float_layers[:-1])} in float, "
                    f"and no model builds with {float_layers[-1]} too ({first_line(exc)})"
                )
                raise validation_failure(
                    variant.filename, len(self.validator.inputs), [*judged.problems, reason]
                ) from None
            return path

        def validate(candidate):
            verdict = self.validator.judge(mixed if candidate == path else variant, candidate)
            return verdict, not verdict.problems

        result = search_float_layers(errors.ranked_layers(), build, validate)
        if not result.passed:
            path.unlink(missing_ok=True)
            raise validation_failure(
                variant.filename,
                len(self.validator.inputs),
                [*judged.problems, "still failing with every quantizable layer kept in float"],
            )
        final = result.mixed
        warn(
            f"{variant.filename} missed its tolerance ({'; '.join(judged.problems)}): replaced "
            f"by {spec.filename} with {', '.join(result.float_layers)} kept in float "
            f"({judged_metric(final.figures)})"
        )
        record = self._record(
            variant,
            errors,
            float_layers=list(result.float_layers),
            replaces={"artifact": variant.filename, "validation": judged.figures},
        )
        return self._artifact(mixed, path, final, record)

    def _artifact(self, variant, path: Path, judged: Judgement, quantization: dict) -> Artifact:
        return Artifact(
            name=variant.filename,
            format=variant.format,
            variant=variant.variant,
            path=variant.filename,
            runtime=variant.runtime,
            sha256=sha256_path(path),
            size_bytes=size_bytes(path),
            inputs=judged.inputs,
            outputs=judged.outputs,
            validation=judged.figures,
            compatibility=_compatibility(path),
            quantization=quantization,
            batch=_fixed_batch(judged.inputs) if judged.inputs else self._source_batch(variant),
            made_from=self.context.committed_file(variant.source).name if variant.source else None,
            npu=self.context.facts.get(variant.filename, {}).get("npu", {}),
        )

    def _source_batch(self, variant) -> int | None:
        """A file nothing runs (a C array) has the batch of the file it is made from."""
        return self.context.batch if variant.source else None

    def carry_quantization_records(self, out: Path) -> list[str]:
        """The quantization/ folder to commit: this export's records plus the earlier ones of
        variants it did not rewrite (a partial export keeps the others' records)."""
        import shutil

        staged, earlier = self.folder / QUANTIZATION_DIR, out / QUANTIZATION_DIR
        if not staged.is_dir():
            return []
        if earlier.is_dir():
            for record in earlier.iterdir():
                if record.is_file() and not (staged / record.name).exists():
                    shutil.copyfile(record, staged / record.name)
        return [QUANTIZATION_DIR]


def judged_metric(figures: dict) -> str:
    """The figure the tolerance judged a mixed model by: class agreement for a classifier, SNR
    for any other output."""
    if figures.get("agreement") is not None:
        return f"agreement {figures['agreement']:.4f}"
    if figures.get("snr_db") is not None:
        return f"SNR {figures['snr_db']:.1f} dB"
    return "within its tolerance"


def _fixed_batch(inputs: list[dict]) -> int | None:
    """The batch fixed in the first input's shape; None when it is dynamic."""
    shape = inputs[0].get("shape") or [None]
    return shape[0] if isinstance(shape[0], int) else None


def _compatibility(path: Path) -> dict:
    """GPU-delegate and TFLite Micro compatibility of a .tflite file; nothing for other files."""
    if path.suffix != ".tflite":
        return {}
    from toolkit.formats.tflite import tflite_compatibility

    with quiet_stderr():
        return tflite_compatibility(path)


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
