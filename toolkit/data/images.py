"""A folder of images in the keras image_dataset_from_directory layout: DIR/train/<class>/* and
DIR/test/<class>/*, or DIR/<class>/* for evaluation only; class names are the sorted folders."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from toolkit.data.checks import data_error, open_data_file, refuse_listing
from toolkit.data.dataset import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MAX_IMAGES = 1_000_000  # as Fashion-MNIST's reader: far above real folders, bounded all the same
MAX_DEPTH = 32  # subfolder levels read below a class folder
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


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
    try:
        names = sorted(
            p.name for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir()
        )
    except OSError as exc:  # a link loop (ELOOP) or an unreadable folder is a data problem
        raise data_error(folder, f"cannot list class folders: {exc.strerror or exc}") from None
    if not names:
        raise data_error(folder, "no class folders (expected DIR/<class>/* or DIR/test/<class>/*)")
    return names


def _image_files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    entries = []
    for label, name in enumerate(classes):
        files = _images_under(folder / name)
        if not files:
            raise data_error(folder / name, f"no images ({', '.join(IMAGE_SUFFIXES)})")
        entries += [(p, label) for p in files]
        if len(entries) > MAX_IMAGES:
            raise _too_many(folder)
    return entries


def _images_under(class_folder: Path) -> list[Path]:
    """The images in a class folder and its subfolders, as keras's image_dataset_from_directory
    reads them: linked subfolders are not entered (so a link loop ends nothing), nor hidden ones."""
    files = []
    for root, folders, names in os.walk(class_folder, onerror=refuse_listing):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        if len(Path(root).relative_to(class_folder).parts) >= MAX_DEPTH:
            folders[:] = []
        files += [
            Path(root, n)
            for n in sorted(names)
            if Path(n).suffix.lower() in IMAGE_SUFFIXES and not n.startswith(".")
        ]
        if len(files) > MAX_IMAGES:
            raise _too_many(class_folder)
    return files


def _too_many(folder: Path):
    return data_error(folder, f"more than {MAX_IMAGES:,} images; refusing to read them")


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

    with open_data_file(path) as file:
        try:
            with warnings.catch_warnings():
                # Past PIL's pixel limit a decompression bomb is an error here, not a warning.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(file)
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


def eight_bit(image):
    """A 16-bit grayscale image mapped by its range onto the 8-bit scale (divided by 257, so
    65535 is 255), where PIL's convert would clip every value above 255 to white."""
    from PIL import Image

    if image.mode not in SIXTEEN_BIT_MODES:
        return image
    values = np.asarray(image)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ValueError(f"{image.mode} pixels outside 0..65535: not a 16-bit image")
    scaled = (values.astype(np.uint32) + 128) // 257  # rounded to the nearest 8-bit step
    return Image.fromarray(scaled.astype(np.uint8), "L")


def _shape_of(path: Path) -> tuple[int, int, int]:
    with _open(path) as image:
        channels = 1 if image.mode in ("1", "L", "F", *SIXTEEN_BIT_MODES) else 3
        return (image.height, image.width, channels)


def _read_image(path: Path, shape: tuple[int, int, int]) -> tuple[np.ndarray, bool]:
    with _open(path) as image:
        try:
            return fit_image(image, shape)
        except ValueError as exc:
            raise data_error(path, f"not a readable image ({exc})") from None


def fit_image(image, shape: tuple[int, int, int]) -> tuple[np.ndarray, bool]:
    """A PIL image as uint8 (H, W, C) with the model's channels (1: grayscale, 3: RGB) and
    size, and whether it had to be resized."""
    from PIL import Image

    height, width, channels = shape
    converted = eight_bit(image).convert("L" if channels == 1 else "RGB")
    resized = converted.size != (width, height)
    if resized:
        converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8).reshape(shape), resized
