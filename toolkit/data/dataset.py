"""One Dataset type for every source, and the preprocessing that maps its items to model inputs."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import ExitCode, ToolkitError


@dataclass(frozen=True)
class Preprocessing:
    """Model input = x * scale + offset, in float32; stated once at export, recorded in the
    manifest, and read back by compare and predict."""

    scale: float
    offset: float = 0.0

    def __post_init__(self):
        if not (math.isfinite(self.scale) and self.scale != 0 and math.isfinite(self.offset)):
            raise ToolkitError(
                f"--scale {self.scale} --offset {self.offset}: need a finite non-zero scale "
                "and a finite offset",
                ExitCode.USAGE,
            )

    @classmethod
    def default_for(cls, dtype) -> Preprocessing:
        """1/255 for 8-bit data (pixels to 0..1), identity for anything else."""
        return cls(1 / 255) if np.dtype(dtype) == np.uint8 else cls(1.0)

    def apply(self, items: np.ndarray) -> np.ndarray:
        # Divided by the reciprocal: 1/255 then gives exactly the tutorial's "divide by 255".
        x = np.asarray(items, dtype=np.float32) / np.float32(1 / self.scale)
        return x + np.float32(self.offset) if self.offset else x

    def to_json(self) -> dict:
        return {"scale": self.scale, "offset": self.offset, "formula": "x * scale + offset"}


def normalize(images: np.ndarray) -> np.ndarray:
    """The tutorial's preprocessing (divide by 255) as float32."""
    return TUTORIAL_PREPROCESSING.apply(images)


TUTORIAL_PREPROCESSING = Preprocessing(1 / 255)


@dataclass(frozen=True)
class Dataset:
    """Evaluation items (and optionally a training split), labels where known, and provenance.

    Items keep their stored dtype (uint8 pixels stay uint8, a quarter of float32's memory);
    `inputs()` turns a slice of them into model inputs. Items of a model with several inputs
    are a structured array, a field per input name (toolkit.arrays); labels of a model with
    several outputs are by output name.
    """

    train_images: np.ndarray | None
    train_labels: np.ndarray | None
    test_images: np.ndarray
    test_labels: np.ndarray | None
    source: Path
    verified: bool = False  # the files match published digests (Fashion-MNIST only)
    class_names: tuple[str, ...] | None = None
    kind: str = "npz"  # fashion-mnist, npz or images
    preprocessing: Preprocessing | None = None  # None: the default for the items' dtype
    notes: tuple[str, ...] = field(default=(), compare=False)  # warnings worth one line each
    # y_test/<output>, y_train/<output> and class_names/<output> of an .npz for several outputs
    output_labels: dict[str, np.ndarray] | None = None
    train_output_labels: dict[str, np.ndarray] | None = None
    output_class_names: dict[str, tuple[str, ...]] | None = None

    @property
    def preprocess(self) -> Preprocessing:
        return self.preprocessing or Preprocessing.default_for(self.test_images.dtype)

    def preprocess_for(self, name: str) -> Preprocessing:
        """One input's preprocessing: the one given for every input, else its dtype's default."""
        return self.preprocessing or Preprocessing.default_for(self.test_images.dtype[name].base)

    def inputs(self, items: np.ndarray):
        """Model inputs from stored items (by input name for several inputs), refused (exit 3)
        when the scaled values overflow float32: a converter given infinities can crash the
        process instead of failing."""
        if items.dtype.names is not None:
            return {
                name: self._scaled(items[name], self.preprocess_for(name))
                for name in items.dtype.names
            }
        return self._scaled(items, self.preprocess)

    def _scaled(self, items: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):  # refused below, in one line
            inputs = preprocessing.apply(items)
        if not np.isfinite(inputs).all():
            largest = float(np.max(np.abs(np.asarray(items, dtype=np.float64))))
            raise ToolkitError(
                f"{self.source}: items scaled by {preprocessing.scale:g} (offset "
                f"{preprocessing.offset:g}) overflow float32 (largest |item| {largest:.3g})",
                ExitCode.DATASET,
            )
        return inputs

    @property
    def labelled(self) -> bool:
        return self.test_labels is not None or bool(self.output_labels)

    @property
    def label_names(self) -> tuple[str, ...]:
        """The class names, or the label numbers ("0", "1", ...) when the data names none."""
        if self.class_names:
            return self.class_names
        labels = [y for y in (self.train_labels, self.test_labels) if y is not None and len(y)]
        count = max(int(y.max()) + 1 for y in labels) if labels else 0
        return tuple(str(i) for i in range(count))


def calibration_sample(dataset: Dataset, count: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """A fixed random sample of preprocessed items for int8 calibration, from the training split
    when there is one, else from the evaluation data; and which of the two it came from."""
    items, source = dataset.train_images, "train split"
    if items is None or not len(items):
        items, source = dataset.test_images, "evaluation sample"
    rng = np.random.default_rng(seed)
    index = rng.choice(len(items), size=min(count, len(items)), replace=False)
    return dataset.inputs(items[np.sort(index)]), source


def calibration_images(dataset: Dataset, count: int, seed: int = 0) -> np.ndarray:
    """The calibration sample alone (its source aside)."""
    return calibration_sample(dataset, count, seed)[0]
