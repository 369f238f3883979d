"""The checks every data source shares: one place says what bad data is and how it is refused."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np

from toolkit.errors import ExitCode, ToolkitError
from toolkit.fsio import open_regular, sha256_stream

# Far past any real class count, and far below int64's range, where stored labels are cast to.
MAX_CLASS_INDEX = 2**31 - 1


def data_error(path: Path, reason: str) -> ToolkitError:
    return ToolkitError(f"{path}: {reason}", ExitCode.DATASET)


def open_data_file(path: Path):
    """`path` opened for binary reading, refused (exit 3) unless it is a regular file: the one
    way every data reader opens a file, so a FIFO or device never blocks or reads without end."""
    return open_regular(path, ExitCode.DATASET)


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
    # Judged in the stored dtype: a uint64 label past int64's range would wrap negative below.
    if len(labels) and int(labels.max()) > MAX_CLASS_INDEX:
        raise data_error(
            path, f"{name} holds label {int(labels.max())}, more classes than any model has"
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


def data_sha256(path: Path) -> str:
    """The digest export records for a data file or folder, so compare notices a changed one.

    A folder's is SHA-256 over "relpath NUL sha256(file) LF" per regular file, sorted by path,
    found without entering linked folders (a link loop ends nothing) and without opening a FIFO.
    """
    if not path.is_dir():
        return _file_sha256(path)
    files = []
    for root, folders, names in os.walk(path, onerror=refuse_listing):
        folders.sort()
        files += [Path(root, name) for name in names if stat.S_ISREG(_mode(Path(root, name)))]
    digest = hashlib.sha256()
    for file in sorted(files):
        rel = file.relative_to(path).as_posix()
        digest.update(f"{rel}\0{_file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    with open_data_file(path) as file:
        try:
            return sha256_stream(file)
        except OSError as exc:
            raise data_error(path, f"cannot read: {exc.strerror}") from None


def _mode(path: Path) -> int:
    """The type of what a link points to; 0 for a dangling link or a link loop."""
    try:
        return os.stat(path).st_mode
    except OSError:
        return 0


def refuse_listing(exc: OSError):
    """os.walk's onerror: a folder that cannot be listed is a data problem (exit 3)."""
    raise data_error(Path(exc.filename or "."), f"cannot list: {exc.strerror}")
