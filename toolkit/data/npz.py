"""An `.npz` file in the keras.datasets layout: x_test, y_test, optionally x_train, y_train and
class_names. Never unpickled; every array checked before use."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from toolkit.data.checks import check_items, check_labels, data_error, regular_file
from toolkit.data.dataset import Dataset


def read_npz(path: Path) -> Dataset:
    regular_file(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            reason = "holds object arrays (refused: .npz data is never unpickled)"
            raise data_error(path, reason) from None
        raise data_error(path, f"not a readable .npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise data_error(path, f"not a readable .npz file ({type(exc).__name__})") from None
    if "x_test" not in arrays:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise data_error(
            path, f"no x_test array (found {found}); expected the keras.datasets layout"
        )
    class_names = None
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.dtype.kind not in "US" or names.ndim != 1:
            raise data_error(path, f"class_names must be a 1-D string array, found {names.dtype}")
        class_names = tuple(str(n) for n in names)
    x_test = check_items(arrays["x_test"], path, "x_test")
    y_test = _labels(arrays, "y_test", x_test, path, class_names)
    x_train = y_train = None
    if "x_train" in arrays:
        x_train = check_items(arrays["x_train"], path, "x_train")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise data_error(
                path,
                f"x_train items {x_train.shape[1:]} differ from x_test items {x_test.shape[1:]}",
            )
        y_train = _labels(arrays, "y_train", x_train, path, class_names)
    return Dataset(x_train, y_train, x_test, y_test, path, class_names=class_names, kind="npz")


def _labels(arrays, name, items, path, class_names) -> np.ndarray | None:
    if name not in arrays:
        return None
    labels = arrays[name]
    if labels.ndim == 2 and labels.shape[1] == 1:  # keras.datasets.cifar10 stores (N, 1)
        labels = labels.reshape(-1)
    return check_labels(labels, len(items), path, name, class_names)
