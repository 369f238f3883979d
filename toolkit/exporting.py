"""The export pipeline (`toolkit export`): each variant written, validated, then committed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit import interrupts, quiet_stderr
from toolkit.artifacts import (
    MANIFEST_NAME,
    Artifact,
    Manifest,
    OutputLock,
    Staging,
    disk_problem,
    io_errors,
    load_manifest,
    recover_staging,
    sha256_file,
    sha256_path,
    size_bytes,
)
from toolkit.data import CLASS_NAMES, calibration_images, load_dataset, normalize
from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.exporters import EXPORTERS, ExportContext, ExportVariant
from toolkit.metrics import compare_outputs
from toolkit.model import library_versions, load_keras_model
from toolkit.results import finite_or_none
from toolkit.runners import RUNNERS

VALIDATION_IMAGES = 1000
DEFAULT_OPSET = 17
DEFAULT_CALIB_SAMPLES = 500
BUILD_DIR = ".build"  # inside the staging folder: intermediates the variants share


def selected_variants(formats: list[str]) -> list[ExportVariant]:
    """Variants of the requested formats ("all" for every one), in registry order."""
    wanted = set(EXPORTERS) if "all" in formats else set(formats)
    return [v for name, variants in EXPORTERS.items() if name in wanted for v in variants]


def validate_artifact(
    variant: ExportVariant,
    path: Path,
    inputs: np.ndarray,
    reference: np.ndarray,
    validate: bool,
    class_scores: bool = True,
) -> tuple[dict, list[dict], list[dict]]:
    """Loads the artifact in its runtime for its I/O details and, unless told not to, judges it
    against the reference with the comparator compare uses; raises when it misses its tolerance.
    """
    if variant.runtime is None:
        return {}, [], []
    with quiet_stderr(), RUNNERS[variant.runtime](path) as runner:
        inputs_detail, outputs_detail = runner.io_details()
        if not validate:
            return {}, inputs_detail, outputs_detail
        outputs = runner.predict(inputs)
    try:
        comparison = compare_outputs(outputs, reference, class_scores=class_scores)
        problems = variant.tolerance.failures(comparison)
    except ValueError as exc:  # NaN, infinity or a wrong shape
        problems = [str(exc)]
    if problems:
        raise ToolkitError(
            f"{variant.filename}: validation against the Keras reference failed on "
            f"{len(inputs)} inputs: {'; '.join(problems)} (use --no-validate to keep it)",
            ExitCode.CONVERSION,
        )
    figures = {
        "images": len(inputs),
        **{k: v for k, v in comparison.to_json().items() if v is not None},
        "tolerance": variant.tolerance.to_json(),
    }
    return finite_or_none(figures), inputs_detail, outputs_detail


def fit_to_model(items: np.ndarray, input_shape: tuple, source: Path) -> np.ndarray:
    """`items` shaped as the model's input: equal shapes, or equal once size-1 axes are dropped
    (28x28 data for a (28, 28, 1) input); anything else is refused naming both shapes."""
    item_shape = tuple(items.shape[1:])
    if item_shape != input_shape:
        squeezed = tuple(d for d in item_shape if d != 1)
        if squeezed != tuple(d for d in input_shape if d != 1):
            raise ToolkitError(
                f"{source}: data items have shape {item_shape} but the model expects {input_shape}",
                ExitCode.DATASET,
            )
    return items.reshape((-1, *input_shape))


def check_labels_fit(labels: np.ndarray | None, classes: int, source: Path) -> None:
    """Class labels must index the model's outputs."""
    if labels is not None and len(labels) and int(labels.max()) >= classes:
        raise ToolkitError(
            f"{source}: labels go up to {int(labels.max())} but the model has {classes} outputs",
            ExitCode.DATASET,
        )


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
    try:
        metrics = json.loads((out / "training" / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
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


def export_artifacts(
    out: Path,
    model_path: Path | None = None,
    formats: list[str] = ("all",),
    calib_samples: int = DEFAULT_CALIB_SAMPLES,
    opset: int = DEFAULT_OPSET,
    validate: bool = True,
    data_dir: Path | None = None,
    on_artifact: Callable[[Artifact], None] = lambda artifact: None,
) -> Manifest:
    """Writes the requested artifacts and the manifest into `out`; all or nothing."""
    model_path = Path(model_path or out / "model.keras")
    model = load_keras_model(model_path)
    input_shape = tuple(model.inputs[0].shape[1:])
    source_sha256 = sha256_file(model_path)
    dataset = load_dataset(data_dir)
    calibration = fit_to_model(
        calibration_images(dataset, calib_samples), input_shape, dataset.source
    )
    inputs = fit_to_model(
        normalize(dataset.test_images[:VALIDATION_IMAGES]), input_shape, dataset.source
    )
    check_labels_fit(dataset.test_labels, int(model.outputs[0].shape[-1]), dataset.source)
    reference = model.predict(inputs, verbose=0)
    variants = selected_variants(list(formats))

    with OutputLock(out):
        recover_staging(out)
        kept = _kept_artifacts(out, source_sha256, {v.filename for v in variants})
        if not any(v.format == "keras" for v in [*kept, *variants]):
            variants = [*EXPORTERS["keras"], *variants]  # every manifest lists its reference
        with Staging(out) as staging:
            context = ExportContext(model, model_path, calibration, opset, staging.dir / BUILD_DIR)
            artifacts = []
            for variant in variants:
                interrupts.check()
                target = staging.dir / variant.filename
                try:
                    with quiet_stderr():
                        variant.write(model, target, context)
                except ToolkitError:
                    raise
                except Exception as exc:  # noqa: BLE001 - converters raise anything
                    if disk := disk_problem(exc):
                        raise ToolkitError(
                            f"{out / variant.filename}: cannot write: {disk}", ExitCode.IO
                        ) from None
                    reason = first_line(exc)
                    raise ToolkitError(
                        f"{variant.filename}: conversion failed: {reason}", ExitCode.CONVERSION
                    ) from None
                figures, inputs_detail, outputs_detail = validate_artifact(
                    variant, target, inputs, reference, validate
                )
                artifact = Artifact(
                    name=variant.filename,
                    format=variant.format,
                    variant=variant.variant,
                    path=variant.filename,
                    runtime=variant.runtime,
                    sha256=sha256_path(target),
                    size_bytes=size_bytes(target),
                    inputs=inputs_detail,
                    outputs=outputs_detail,
                    validation=figures,
                )
                artifacts.append(artifact)
                on_artifact(artifact)
            written = [a.name for a in artifacts]
            manifest = Manifest(
                artifacts=kept + artifacts,
                class_names=list(CLASS_NAMES),
                source_model_sha256=source_sha256,
                versions=library_versions(),
                training={
                    **_training_record(out, source_sha256),
                    "calibration_samples": len(calibration),
                    "dataset_verified": dataset.verified,
                },
            )
            with io_errors(out / MANIFEST_NAME):
                (staging.dir / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2))
            staging.commit([*sorted(written), MANIFEST_NAME])
    return manifest
