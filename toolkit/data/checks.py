"""The checks every data source shares: one place says what bad data is and how it is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from toolkit.errors import ExitCode, ToolkitError


def data_error(path: Path, reason: str) -> ToolkitError:
    return ToolkitError(f"{path}: {reason}", ExitCode.DATASET)


def regular_file(path: Path) -> Path:
    """`path` when it is a regular file; a FIFO or device would hang or read without end."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise data_error(path, "no such file") from None
    except OSError as exc:
        raise data_error(path, f"cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise data_error(path, "not a regular file (FIFO, device or folder)")
    return path


def check_items(items: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Numbers, at least one item, a shape per item, and no NaN or infinity."""
    if items.dtype.kind not in "uif":
        raise data_error(path, f"{name} must hold numbers, found dtype {items.dtype}")
    if items.ndim < 2 or not len(items):
        raise data_error(
            path, f"{name} must be (items, ...) with at least one item, found {items.shape}"
        )
    if items.dtype.kind == "f" and not np.isfinite(items).all():
        raise data_error(path, f"{name} holds NaN or infinity")
    return items


def check_labels(
    labels: np.ndarray, count: int, path: Path, name: str, class_names: tuple | None
) -> np.ndarray:
    """Integer class indices, one per item, inside 0..K-1 when the class names are known."""
    if labels.dtype.kind not in "iu":
        raise data_error(
            path, f"{name} must hold integer class indices, found dtype {labels.dtype}"
        )
    if labels.ndim != 1 or len(labels) != count:
        raise data_error(path, f"{name} has shape {labels.shape} for {count} items")
    if len(labels) and labels.min() < 0:
        raise data_error(path, f"{name} holds a negative label ({int(labels.min())})")
    if class_names is not None and len(labels) and labels.max() >= len(class_names):
        raise data_error(
            path,
            f"{name} holds label {int(labels.max())}, outside 0..{len(class_names) - 1} "
            f"({len(class_names)} class names)",
        )
    return labels.astype(np.int64)


def fit_to_model(items: np.ndarray, input_shape: tuple, source: Path) -> np.ndarray:
    """`items` shaped as the model's input: equal shapes, or equal once size-1 axes are dropped
    (28x28 data for a (28, 28, 1) input); anything else is refused naming both shapes."""
    item_shape = tuple(items.shape[1:])
    if item_shape != tuple(input_shape):
        squeezed = tuple(d for d in item_shape if d != 1)
        if squeezed != tuple(d for d in input_shape if d != 1):
            raise data_error(
                source,
                f"data items have shape {item_shape} but the model expects {tuple(input_shape)}",
            )
    return items.reshape((-1, *input_shape))
