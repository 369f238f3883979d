"""The evaluation items as a worker reads them, wherever it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.arrays import Named, concatenated, is_structured, packed
from toolkit.data import Preprocessing

ITEMS_NAME = "items.npy"


@dataclass(frozen=True)
class EvalData:
    """The evaluation items memory-mapped from an .npy file in their stored dtype and
    preprocessed one batch at a time, so no process holds the float32 copy of the whole set and
    no pipe carries it."""

    items_path: Path
    preprocessing: Preprocessing
    input_shape: tuple[int, ...]

    @classmethod
    def write(
        cls, items: np.ndarray, folder: Path, preprocessing, input_shape, inputs: list = ()
    ) -> EvalData:
        """`items` saved for the workers. Items of several inputs are saved preprocessed (each
        input's own preprocessing from `inputs`, the manifest's entries) and shaped as the
        model's, so a worker only reads them: one preprocessing cannot serve them all."""
        if is_structured(items):
            items, preprocessing = model_ready(items, inputs), Preprocessing(1.0)
        path = folder / ITEMS_NAME
        np.save(path, np.ascontiguousarray(items), allow_pickle=False)
        return cls(path, preprocessing, tuple(input_shape))

    def items(self) -> np.ndarray:
        return np.load(self.items_path, mmap_mode="r", allow_pickle=False)

    def __len__(self) -> int:
        return len(self.items())

    def inputs(self, start: int, stop: int):
        """Model inputs for items[start:stop]: one array, or arrays by input name for items of
        several inputs (stored preprocessed, a field per input, already in the model's shapes)."""
        items = self.items()[start:stop]
        if is_structured(items):
            return {name: self.preprocessing.apply(items[name]) for name in items.dtype.names}
        return self.preprocessing.apply(items).reshape((-1, *self.input_shape))

    def outputs(self, predict: Callable[[object], Named], batch: int = 1024) -> Named:
        """`predict` over every item, a batch at a time, outputs stacked by name as float32."""
        parts = [
            {
                name: array.astype(np.float32)
                for name, array in predict(self.inputs(i, i + batch)).items()
            }
            for i in range(0, len(self), batch)
        ]
        return concatenated(parts)


def model_ready(items: np.ndarray, inputs: list) -> np.ndarray:
    """Structured items as float32 model inputs, field by field, per the manifest's inputs."""
    from toolkit.data.checks import fit_to_model

    ready = {}
    for entry in inputs:
        name, spec = entry["name"], entry.get("preprocessing", {})
        preprocessing = Preprocessing(float(spec.get("scale", 1.0)), float(spec.get("offset", 0.0)))
        shape = tuple(int(d) for d in entry["shape"][1:])
        ready[name] = fit_to_model(preprocessing.apply(items[name]), shape, Path(name))
    return packed(ready)
