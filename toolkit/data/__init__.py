"""Data sources -> one Dataset: Fashion-MNIST (the default), an .npz file or a folder of images."""

from __future__ import annotations

from pathlib import Path

from toolkit.data.dataset import (
    TUTORIAL_PREPROCESSING,
    Dataset,
    Preprocessing,
    calibration_images,
    calibration_sample,
    normalize,
)
from toolkit.data.fashion_mnist import (
    CLASS_NAMES,
    DEBIAN_DIR,
    IDX_FILES,
    IMAGE_SIDE,
    NUM_CLASSES,
    load_dataset,
    read_idx,
)
from toolkit.errors import ExitCode, ToolkitError

FASHION_MNIST = "fashion-mnist"


def load_data(
    data: str | Path | None = None,
    data_dir: Path | None = None,
    image_shape: tuple[int, ...] | None = None,
    preprocessing: Preprocessing | None = None,
    train: bool = True,
) -> Dataset:
    """The dataset `data` names: "fashion-mnist" (default; found in `data_dir` or the usual
    places), an .npz file, or a folder of images (resized to `image_shape` when given).
    Without `train`, Fashion-MNIST's train split is not read (the other sources are read whole)."""
    from dataclasses import replace

    if data is None or str(data) == FASHION_MNIST:
        dataset = load_dataset(data_dir, train)
    else:
        path = Path(data)
        if path.suffix.lower() == ".npz":
            from toolkit.data.npz import read_npz

            dataset = read_npz(path)
        elif path.is_dir():
            from toolkit.data.images import read_image_folder

            dataset = read_image_folder(path, image_shape)
        else:
            raise ToolkitError(
                f"{path}: --data must be fashion-mnist, an .npz file or a folder of images",
                ExitCode.DATASET,
            )
    return replace(dataset, preprocessing=preprocessing) if preprocessing else dataset


__all__ = [
    "CLASS_NAMES",
    "DEBIAN_DIR",
    "FASHION_MNIST",
    "IDX_FILES",
    "IMAGE_SIDE",
    "NUM_CLASSES",
    "TUTORIAL_PREPROCESSING",
    "Dataset",
    "Preprocessing",
    "calibration_images",
    "calibration_sample",
    "load_data",
    "load_dataset",
    "normalize",
    "read_idx",
]
