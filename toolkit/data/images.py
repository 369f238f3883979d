"""A folder of images in the keras image_dataset_from_directory layout: DIR/train/<class>/* and
DIR/test/<class>/*, or DIR/<class>/* for evaluation only; class names are the sorted folders."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from toolkit.data.checks import data_error
from toolkit.data.dataset import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def read_image_folder(folder: Path, shape: tuple[int, ...] | None = None) -> Dataset:
    """Every image converted to `shape`'s channel count (1 or 3) and resized to its height and
    width; without a shape, the first image's size and colour decide."""
    if not folder.is_dir():
        raise data_error(folder, "not a folder of images")
    splits = {name: folder / name for name in ("train", "test") if (folder / name).is_dir()}
    if "test" not in splits:
        splits = {"test": folder}  # DIR/<class>/*: evaluation only
    classes = {split: _class_folders(path) for split, path in splits.items()}
    if "train" in classes and classes["train"] != classes["test"]:
        only_train = sorted(set(classes["train"]) - set(classes["test"]))
        only_test = sorted(set(classes["test"]) - set(classes["train"]))
        raise data_error(
            folder,
            f"train and test class folders differ (only in train: {only_train or 'none'}; "
            f"only in test: {only_test or 'none'})",
        )
    names = classes["test"]
    files = {split: _image_files(splits[split], names) for split in splits}
    shape = shape or _shape_of(files["test"][0][0])
    resized = 0
    arrays = {}
    for split, entries in files.items():
        items = np.empty((len(entries), *image_shape(shape)), dtype=np.uint8)
        for i, (path, _) in enumerate(entries):
            items[i], was_resized = _read_image(path, image_shape(shape))
            resized += was_resized
        labels = np.array([label for _, label in entries], dtype=np.int64)
        arrays[split] = (items.reshape((len(entries), *shape)), labels)
    notes = ()
    if resized:
        notes = (f"{folder}: {resized} images resized to {shape[1]}x{shape[0]}",)
    train = arrays.get("train", (None, None))
    return Dataset(
        *train,
        *arrays["test"],
        folder,
        class_names=tuple(names),
        kind="images",
        notes=notes,
    )


def _class_folders(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise data_error(folder, "no class folders (expected DIR/<class>/* or DIR/test/<class>/*)")
    return names


def _image_files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    entries = []
    for label, name in enumerate(classes):
        files = sorted(
            p
            for p in (folder / name).iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        )
        if not files:
            raise data_error(folder / name, f"no images ({', '.join(IMAGE_SUFFIXES)})")
        entries += [(p, label) for p in files]
    return entries


def image_shape(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W) and (H, W, 1) are grayscale, (H, W, 3) colour; anything else is not an image."""
    if len(shape) == 2:
        return (*shape, 1)
    if len(shape) == 3 and shape[2] in (1, 3):
        return tuple(shape)
    raise data_error(
        Path("."), f"the model input {shape} is not an image (H, W), (H, W, 1) or (H, W, 3)"
    )


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Past PIL's pixel limit a decompression bomb is an error here, not a warning.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            image.seek(0)  # a GIF's first frame
            image.load()
        return image
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise data_error(path, f"not a readable image ({type(exc).__name__})") from None


def _shape_of(path: Path) -> tuple[int, int, int]:
    with _open(path) as image:
        channels = 1 if image.mode in ("1", "L", "I;16", "I", "F") else 3
        return (image.height, image.width, channels)


def _read_image(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, bool]:
    with _open(path) as image:
        return fit_image(image, shape)


def fit_image(image, shape: tuple[int, int, int]) -> tuple[np.ndarray, bool]:
    """A PIL image as uint8 (H, W, C) with the model's channels (1: grayscale, 3: RGB) and
    size, and whether it had to be resized."""
    from PIL import Image

    height, width, channels = shape
    converted = image.convert("L" if channels == 1 else "RGB")
    resized = converted.size != (width, height)
    if resized:
        converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8).reshape(shape), resized
