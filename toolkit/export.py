"""`toolkit export`: every requested variant written, validated in its runtime, then committed."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit import quiet_stderr
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
from toolkit.metrics import agreement, max_abs_diff
from toolkit.model import library_versions, load_keras_model
from toolkit.runners import RUNNERS

VALIDATION_IMAGES = 1000
DEFAULT_OPSET = 17
DEFAULT_CALIB_SAMPLES = 500


def selected_variants(formats: list[str]) -> list[ExportVariant]:
    """Variants of the requested formats ("all" for every one), in registry order."""
    wanted = set(EXPORTERS) if "all" in formats else set(formats)
    return [v for name, variants in EXPORTERS.items() if name in wanted for v in variants]


def validate_artifact(
    variant: ExportVariant, path: Path, images: np.ndarray, reference: np.ndarray, validate: bool
) -> tuple[dict, list[dict], list[dict]]:
    """Loads the artifact in its runtime for its I/O details and, unless told not to, checks it
    beside the reference on `images`; raises when it misses its tolerance."""
    with quiet_stderr(), RUNNERS[variant.runtime](path) as runner:
        inputs, outputs = runner.io_details()
        if not validate:
            return {}, inputs, outputs
        probabilities = runner.predict(images)
    figures = {
        "images": len(images),
        "max_abs_diff": max_abs_diff(probabilities, reference),
        "agreement": agreement(probabilities, reference),
        "tolerance": {k: v for k, v in vars(variant.tolerance).items() if v is not None},
    }
    problems = variant.tolerance.failures(figures["max_abs_diff"], figures["agreement"])
    if problems or not np.isfinite(probabilities).all():
        problems = problems or ["non-finite outputs"]
        raise ToolkitError(
            f"{variant.filename}: validation against the Keras reference failed on "
            f"{len(images)} test images: {'; '.join(problems)} (use --no-validate to keep it)",
            ExitCode.CONVERSION,
        )
    return figures, inputs, outputs


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
    source_sha256 = sha256_file(model_path)
    dataset = load_dataset(data_dir)
    context = ExportContext(calibration_images(dataset, calib_samples), model_path, opset)
    images = normalize(dataset.test_images[:VALIDATION_IMAGES])
    reference = model.predict(images.reshape((-1, *model.inputs[0].shape[1:])), verbose=0)
    variants = selected_variants(list(formats))

    with OutputLock(out):
        recover_staging(out)
        kept = _kept_artifacts(out, source_sha256, {v.filename for v in variants})
        if not any(v.format == "keras" for v in [*kept, *variants]):
            variants = [*EXPORTERS["keras"], *variants]  # every manifest lists its reference
        with Staging(out) as staging:
            artifacts = []
            for variant in variants:
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
                figures, inputs, outputs = validate_artifact(
                    variant, target, images, reference, validate
                )
                artifact = Artifact(
                    name=variant.filename,
                    format=variant.format,
                    variant=variant.variant,
                    path=variant.filename,
                    runtime=variant.runtime,
                    sha256=sha256_path(target),
                    size_bytes=size_bytes(target),
                    inputs=inputs,
                    outputs=outputs,
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
                    "calibration_samples": len(context.calibration),
                    "dataset_verified": dataset.verified,
                },
            )
            with io_errors(out / MANIFEST_NAME):
                (staging.dir / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2))
            staging.commit([*sorted(written), MANIFEST_NAME])
    return manifest
