"""What `toolkit predict` needs besides a runner: the runtime for a file, its checksum, images."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np

from toolkit.data import IMAGE_SIDE
from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.fsio import read_capped, sha256_path
from toolkit.process import default_max_memory_mb, run_isolated
from toolkit.store import Manifest


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


IMAGE_MAX_BYTES = 16 << 20  # a 96x96 photo is tens of kB; a photo to be resized fits easily
IMAGE_MAX_PIXELS = 4096 * 4096  # decoded size; far below PIL's own bomb limit of 89M pixels
ZIP_MAGIC = b"PK\x03\x04"


def _refused(path: Path, reason: str) -> ToolkitError:
    return ToolkitError(f"{path}: {reason}", ExitCode.USAGE)


def _load_npy(path: Path, data: bytes, shape: tuple[int, ...], pixels: bool) -> np.ndarray:
    """One item of the model's input shape from .npy bytes, its header checked before any data
    is read (a header may announce hundreds of GB). For pixel data (a model fed x / 255) values
    must be 0..255, or 0..1 (taken as already scaled)."""
    from numpy.lib import format as npy

    if data.startswith(ZIP_MAGIC):
        raise _refused(path, "an .npz archive, not a .npy array; save one array with np.save")
    stream = io.BytesIO(data)
    try:
        major, _ = npy.read_magic(stream)
        read_header = {1: npy.read_array_header_1_0, 2: npy.read_array_header_2_0}[major]
        found, _, dtype = read_header(stream)
    except (ValueError, KeyError, SyntaxError, EOFError) as exc:
        raise _refused(path, f"not a readable .npy array ({first_line(exc)})") from None
    if tuple(d for d in found if d != 1) != tuple(d for d in shape if d != 1):
        raise _refused(path, f"expected an array of shape {tuple(shape)}, found shape {found}")
    if dtype.kind not in "uif":
        raise _refused(path, f"expected numbers, found dtype {dtype}")
    stream.seek(0)
    try:
        array = np.load(stream, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise _refused(path, f"not a readable .npy array ({first_line(exc)})") from None
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise _refused(path, "the array holds NaN or infinity")
    if pixels and array.dtype != np.uint8 and (values.min() < 0 or values.max() > 255):
        low, high = values.min(), values.max()
        raise _refused(
            path, f"{dtype} values from {low:g} to {high:g}; expected pixels 0..255 (or 0..1)"
        )
    return array.reshape(shape)


def _decode_image(path: Path, data: bytes, shape: tuple[int, ...]) -> tuple[np.ndarray, str | None]:
    """An image in the model's channels and size from PNG/JPEG/BMP/GIF bytes; the size is
    checked from the header before any pixel is decoded, and every PIL warning or error becomes
    a refusal."""
    from PIL import Image

    from toolkit.data.images import fit_image, image_shape

    hwc = image_shape(shape)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # DecompressionBombWarning and friends: refuse
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > IMAGE_MAX_PIXELS:
                    raise _refused(
                        path, f"too large: {width}x{height} pixels (at most {IMAGE_MAX_PIXELS})"
                    )
                array, resized = fit_image(image, hwc)
    except ToolkitError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _refused(path, f"too large: {first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a malformed file
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        raise _refused(path, f"not a readable image ({reason})") from None
    warning = f"{path}: resized from {width}x{height} to {hwc[1]}x{hwc[0]}" if resized else None
    return array.reshape(shape), warning


def load_image(
    path: Path, shape: tuple[int, ...] = (IMAGE_SIDE, IMAGE_SIDE), pixels: bool = True
) -> tuple[np.ndarray, str | None]:
    """One raw input of the model's shape from an image file (converted to its channels and
    resized, with a warning) or an .npy array; returns (array, warning or None).

    Fashion-MNIST is light garments on black: photos of dark garments on white need inverting.
    The file may come from anyone: it is read whole (a regular file, size-capped) and decoded
    from memory, so no decoder ever sees a FIFO or an unbounded stream.
    """
    if not os.path.lexists(path):
        raise _refused(path, "image not found")
    data = read_capped(path, ExitCode.USAGE, IMAGE_MAX_BYTES)
    if path.suffix.lower() == ".npy":
        return _load_npy(path, data, shape, pixels), None
    return _decode_image(path, data, shape)


def top_k(probabilities: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """(class index, probability) pairs, most likely first, for each row; one score column is
    a binary classifier's probability of class 1."""
    probabilities = probabilities.reshape(len(probabilities), -1)
    if probabilities.shape[1] == 1:
        probabilities = np.concatenate([1 - probabilities, probabilities], axis=1)
    order = np.argsort(-probabilities, axis=1)[:, :k]
    return [
        [(int(c), float(row[c])) for c in classes]
        for row, classes in zip(probabilities, order, strict=True)
    ]


def several_inputs(manifest) -> list[dict] | None:
    """The manifest's inputs when the model has several, else None."""
    return manifest.inputs if manifest is not None and len(manifest.inputs) > 1 else None


def check_images_fit(images, manifest) -> None:
    """Image files feed a one-input model only; a model with several is fed its data's items."""
    if images and (inputs := several_inputs(manifest)):
        names = ", ".join(entry["name"] for entry in inputs)
        raise ToolkitError(
            f"{images[0]}: the model has several inputs ({names}); predict on items of its "
            ".npz data with --index",
            ExitCode.USAGE,
        )


def prediction_inputs(items: list, shape: tuple, preprocessing, several: list | None = None):
    """(the items stacked as given, model-ready inputs): one array shaped `shape`, or arrays by
    input name when `several` (the manifest's inputs) says how each input is preprocessed."""
    if several:
        from toolkit.comparing.data import model_ready

        ready = model_ready(np.stack(items), several)
        return None, {name: ready[name] for name in ready.dtype.names}
    batch = np.stack([np.asarray(item, dtype=np.float32) for item in items])
    return batch, preprocessing.apply(batch).reshape((-1, *shape))


def outputs_by_head(manifest, named: dict) -> tuple[list[dict], object]:
    """(each output's name, kind and class names; the outputs): one array for a model with one
    output, as `predict` has always returned, else the arrays by name in the model's order."""
    from toolkit.comparing.scoring import output_heads

    heads = output_heads(manifest, named)
    ordered = {head["name"]: named[head["name"]] for head in heads if head["name"] in named}
    return heads, next(iter(ordered.values())) if len(ordered) == 1 else ordered


def _predict_worker(connection, runner_class, path, inputs, threads) -> None:
    """Entry point of a predicting process: sends ("ok", outputs) or ("error", (line, code))."""
    from toolkit.process import quiet_stderr
    from toolkit.runners.base import attempt

    def task():
        with quiet_stderr(), runner_class(path, threads) as runner:
            return runner.predict(inputs)

    try:
        connection.send(attempt(runner_class.runtime, task))
    finally:
        connection.close()


def predict_isolated(
    runner_class,
    path: Path,
    inputs,
    threads: int = 1,
    timeout_seconds: float = 300.0,
    max_memory_mb: float | None = None,
) -> dict[str, np.ndarray]:
    """The runner's outputs by name for model-ready `inputs` (one array, or arrays by input
    name), computed in a process of its own so a runtime that crashes or hangs on a hostile file
    is one line and exit 4, not a dead CLI."""
    memory = default_max_memory_mb() if max_memory_mb is None else max_memory_mb
    args = (runner_class, path, inputs, threads)
    preload = runner_class.server_imports
    status, result = run_isolated(_predict_worker, args, timeout_seconds, memory, preload)
    if status == "ok":
        return result
    message, code = result if isinstance(result, tuple) else (result, ExitCode.ARTIFACT)
    if str(path) not in message:
        message = f"{path}: {message}"
    raise ToolkitError(message, ExitCode(code))
