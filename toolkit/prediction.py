"""What `toolkit predict` needs besides a runner: the runtime for a file, its checksum, images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.artifacts import Manifest, sha256_path
from toolkit.data import IMAGE_SIDE
from toolkit.errors import ExitCode, ToolkitError


def runtime_for(path: Path, manifest: Manifest | None) -> str:
    """The runtime the manifest names for `path`, else the first registered runtime that opens
    its file type."""
    from toolkit.runners import RUNNERS, runners_for

    if manifest is not None:
        for artifact in manifest.artifacts:
            if artifact.name == path.name and artifact.runtime:
                return artifact.runtime
    if runners := runners_for(path, is_dir=path.is_dir()):
        return runners[0].runtime
    known = sorted({s for r in RUNNERS.values() for s in r.suffixes if s != "/"})
    raise ToolkitError(
        f"{path}: unknown artifact type (expected {', '.join(known)} or a SavedModel folder)",
        ExitCode.USAGE,
    )


def check_listed_checksum(path: Path, manifest: Manifest | None) -> None:
    """In a folder with a manifest, a file must be listed there with the checksum export recorded
    (an unlisted one is left over from an earlier export of another model)."""
    if manifest is None or not path.exists():
        return
    listed = next((a for a in manifest.artifacts if a.path == path.name), None)
    if listed is None:
        raise ToolkitError(
            f"{path}: not listed in {path.parent / 'manifest.json'} (stale?); re-export, "
            "or pass --no-verify",
            ExitCode.ARTIFACT,
        )
    if sha256_path(path) != listed.sha256:
        raise ToolkitError(
            f"{path}: changed since export (sha256 differs from the manifest); re-export, "
            "or pass --no-verify",
            ExitCode.ARTIFACT,
        )


def load_image(path: Path, shape: tuple[int, ...] = (IMAGE_SIDE, IMAGE_SIDE)):
    """One raw input of the model's shape from an image file (converted to its channels and
    resized, with a warning) or an .npy array; returns (array, warning or None).

    Fashion-MNIST is light garments on black: photos of dark garments on white need inverting.
    """
    if not path.is_file():
        raise ToolkitError(f"{path}: image not found", ExitCode.USAGE)
    if path.suffix.lower() == ".npy":
        return _load_array(path, shape), None
    from PIL import Image, UnidentifiedImageError

    from toolkit.data.images import fit_image, image_shape

    hwc = image_shape(shape)
    try:
        with Image.open(path) as image:
            array, resized = fit_image(image, hwc)
            size = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise ToolkitError(
            f"{path}: not a readable image ({type(exc).__name__})", ExitCode.USAGE
        ) from None
    warning = f"{path}: resized from {size[0]}x{size[1]} to {hwc[1]}x{hwc[0]}" if resized else None
    return array.reshape(shape), warning


def _load_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """An .npy input in the data's own units (8-bit pixels, or floats in [0, 1] for a model fed
    pixels / 255, which are scaled back to 0..255)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ToolkitError(f"{path}: not a readable .npy array ({exc})", ExitCode.USAGE) from None
    squeezed = tuple(d for d in array.shape if d != 1)
    if squeezed != tuple(d for d in shape if d != 1):
        raise ToolkitError(
            f"{path}: expected an array of shape {shape}, found shape {array.shape}",
            ExitCode.USAGE,
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ToolkitError(f"{path}: expected numbers, found dtype {array.dtype}", ExitCode.USAGE)
    if not np.isfinite(array).all():
        raise ToolkitError(f"{path}: the array holds NaN or infinity", ExitCode.USAGE)
    return array.reshape(shape)


def top_k(probabilities: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """(class index, probability) pairs, most likely first, for each row."""
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return [
        [(int(c), float(row[c])) for c in classes]
        for row, classes in zip(probabilities, order, strict=True)
    ]
