"""What an export format declares: its variants, file names, runtime and validation tolerance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.model import INPUT_NAME, OUTPUT_NAME


@dataclass(frozen=True)
class Tolerance:
    """How close an artifact must stay to the Keras reference on the validation images."""

    max_abs_diff: float | None = None  # on probabilities
    min_agreement: float | None = None  # share of identical top-1 classes

    def failures(self, max_abs_diff: float, agreement: float) -> list[str]:
        problems = []
        if self.max_abs_diff is not None and not max_abs_diff <= self.max_abs_diff:
            problems.append(f"max |diff| {max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if self.min_agreement is not None and not agreement >= self.min_agreement:
            problems.append(f"top-1 agreement {agreement:.4f} < {self.min_agreement}")
        return problems


@dataclass(frozen=True)
class ExportContext:
    """Inputs an exporter may need besides the model."""

    calibration: np.ndarray  # normalized float32 training images, (N, 28, 28)
    source: Path  # the reference .keras file
    opset: int


@dataclass(frozen=True)
class ExportVariant:
    """One artifact a format produces."""

    format: str
    variant: str
    filename: str
    runtime: str  # key in toolkit.runners.RUNNERS
    tolerance: Tolerance
    write: Callable[[object, Path, ExportContext], None]  # (keras model, target path, context)


def serving_function(model):
    """A tf.function with an explicit signature: input `images`, output `probabilities`.

    Every TF-based converter starts from it, so all formats share the same names and layout.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images):
        return {OUTPUT_NAME: model(images, training=False)}

    return serve
