"""Which (artifact, runtime) rows compare measures, and the jobs an executor runs for them."""

from __future__ import annotations

from toolkit.comparing.measurement import Job, MeasureSettings
from toolkit.data import Preprocessing
from toolkit.results import Row
from toolkit.store import Artifact, Manifest

REFERENCE = "model.keras"


def manifest_preprocessing(manifest: Manifest) -> Preprocessing:
    """The preprocessing export recorded (manifests before numbers were recorded said "divide
    by 255" in words)."""
    scale = manifest.preprocessing.get("scale", 1 / 255)
    scale = 1 / 255 if isinstance(scale, str) else float(scale)
    return Preprocessing(scale, float(manifest.preprocessing.get("offset", 0.0)))


def manifest_input_shape(manifest: Manifest) -> tuple[int, ...]:
    return tuple(int(d) for d in manifest.preprocessing.get("input_shape", (28, 28)))


def row_plan(manifest: Manifest, runtimes: list[str] | None = None) -> list[tuple[Artifact, type]]:
    """Every (artifact, runner) pair to measure: each artifact in its own runtime, then in every
    other registered runtime that opens its file type; `runtimes` limits the runtimes.

    The reference always comes first: every other row is compared against its outputs.
    """
    from toolkit.runners import RUNNERS, runners_for

    plan = []
    for artifact in sorted(manifest.artifacts, key=lambda a: a.name != REFERENCE):
        if artifact.runtime is None:
            continue  # not runnable by itself (e.g. a C source for a microcontroller build)
        native = RUNNERS.get(artifact.runtime)
        others = [r for r in runners_for(artifact.path) if r is not native]
        for runner_class in [native, *others] if native else others:
            wanted = runtimes is None or runner_class.runtime in runtimes
            if wanted or artifact.name == REFERENCE:
                plan.append((artifact, runner_class))
    return plan


def base_row(artifact: Artifact, runner_class: type, status: str) -> Row:
    """A row's identity before anything is measured."""
    return Row(
        artifact.name,
        artifact.format,
        artifact.variant,
        runner_class.runtime,
        artifact.size_bytes,
        status=status,
        compatibility=artifact.compatibility,
        quantization=artifact.quantization,
    )


def job_for(artifact: Artifact, runner_class: type, settings: MeasureSettings) -> Job:
    return Job(artifact.path, artifact.sha256, runner_class.runtime, settings)
