"""The evaluation items as a worker reads them, wherever it runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    def write(cls, items: np.ndarray, folder: Path, preprocessing, input_shape) -> EvalData:
        path = folder / ITEMS_NAME
        np.save(path, np.ascontiguousarray(items), allow_pickle=False)
        return cls(path, preprocessing, tuple(input_shape))

    def items(self) -> np.ndarray:
        return np.load(self.items_path, mmap_mode="r", allow_pickle=False)

    def __len__(self) -> int:
        return len(self.items())

    def inputs(self, start: int, stop: int) -> np.ndarray:
        """Model inputs for items[start:stop]."""
        batch = self.preprocessing.apply(self.items()[start:stop])
        return batch.reshape((-1, *self.input_shape))

    def outputs(self, predict: Callable[[np.ndarray], np.ndarray], batch: int = 1024) -> np.ndarray:
        """`predict` over every item, a batch at a time, outputs stacked as float32."""
        count = len(self)
        return np.concatenate(
            [predict(self.inputs(i, i + batch)).astype(np.float32) for i in range(0, count, batch)]
        )
