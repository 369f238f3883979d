"""Fashion-MNIST from its IDX files, read defensively: the files may come from anywhere."""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from toolkit.data.checks import open_data_file
from toolkit.data.dataset import Dataset
from toolkit.errors import ExitCode, ToolkitError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SIDE = 28
NUM_CLASSES = len(CLASS_NAMES)
# Far above Fashion-MNIST's 60,000 yet small enough (about 0.8 GB of pixels) that a hostile
# header cannot make the reader allocate the machine away.
MAX_ITEMS = 1_000_000
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
KERAS_CACHE_DIR = Path("~/.keras/datasets/fashion-mnist")
INSTALL_HINT = (
    "install it with `apt-get install dataset-fashion-mnist`, "
    "or pass --data-dir / set FASHION_MNIST_DIR to a folder holding the four IDX files"
)

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension


@dataclass(frozen=True)
class IdxFile:
    """One of the four dataset files: its stem and the SHA-256 of its decompressed bytes."""

    stem: str
    kind: str  # "images" or "labels"
    # Digests of the decompressed IDX bytes, so that any re-compression of the published files
    # (Debian's package re-gzipped them: its .gz digests differ from Zalando's) still verifies.
    sha256: str


TRAIN_IMAGES = IdxFile(
    "train-images-idx3-ubyte",
    "images",
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
)
TRAIN_LABELS = IdxFile(
    "train-labels-idx1-ubyte",
    "labels",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
)
TEST_IMAGES = IdxFile(
    "t10k-images-idx3-ubyte",
    "images",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
)
TEST_LABELS = IdxFile(
    "t10k-labels-idx1-ubyte",
    "labels",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
)
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def candidate_dirs(data_dir: Path | None = None) -> list[Path]:
    """Where the dataset is looked for, in order."""
    dirs = [data_dir] if data_dir is not None else []
    if os.environ.get("FASHION_MNIST_DIR"):
        dirs.append(Path(os.environ["FASHION_MNIST_DIR"]))
    dirs += [DEBIAN_DIR, KERAS_CACHE_DIR.expanduser()]
    return dirs


def _exists(path: Path) -> bool:
    """Path.exists, except that a path which cannot be looked at (name too long, no permission)
    is a ToolkitError rather than an OSError escaping as a traceback."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise ToolkitError(f"{path}: cannot read: {exc.strerror}", ExitCode.DATASET) from None
    return True


def idx_path(folder: Path, idx: IdxFile) -> Path | None:
    """The file for `idx` in `folder`, gzipped or not, or None."""
    for name in (idx.stem + ".gz", idx.stem):
        if _exists(folder / name):
            return folder / name
    return None


def _require_files(folder: Path) -> Path:
    """`folder`, or a ToolkitError naming which of the four files it lacks."""
    missing = [idx.stem for idx in IDX_FILES if idx_path(folder, idx) is None]
    if missing:
        raise ToolkitError(
            f"{folder}: missing {', '.join(missing)} (.gz or uncompressed)", ExitCode.DATASET
        )
    return folder


def find_data_dir(data_dir: Path | None = None) -> Path:
    """The first candidate folder holding all four files; an explicit --data-dir must hold them."""
    if data_dir is not None:
        if not _exists(data_dir):
            raise ToolkitError(f"{data_dir}: dataset folder does not exist", ExitCode.DATASET)
        if not data_dir.is_dir():
            raise ToolkitError(f"{data_dir}: not a folder", ExitCode.DATASET)
        return _require_files(data_dir)
    for folder in candidate_dirs():
        if all(idx_path(folder, idx) for idx in IDX_FILES):
            return folder
    return download_with_keras()


def download_with_keras() -> Path:
    """Keras's own downloader, the last resort; offline machines get the install hint."""
    try:
        from keras.datasets import fashion_mnist

        fashion_mnist.load_data()
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        searched = ", ".join(str(d) for d in candidate_dirs())
        raise ToolkitError(
            f"Fashion-MNIST not found in {searched} and the download failed "
            f"({type(exc).__name__}): {INSTALL_HINT}",
            ExitCode.DATASET,
        ) from None
    # Keras caches under $KERAS_HOME (or /tmp/.keras when ~/.keras is read-only), not always here.
    return _require_files(KERAS_CACHE_DIR.expanduser())


def _read_exact(stream: BinaryIO, count: int, path: Path, what: str) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise ToolkitError(
            f"{path}: truncated: expected {count} bytes of {what}, found {len(data)}",
            ExitCode.DATASET,
        )
    return data


@contextmanager
def _open_idx(path: Path) -> Iterator[BinaryIO]:
    with open_data_file(path) as raw:
        if raw.read(2) != b"\x1f\x8b":
            raw.seek(0)
            yield raw
            return
        raw.seek(0)
        # GzipFile(fileobj=...) does not close `raw`: the enclosing `with` does.
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield stream


def read_idx(path: Path, kind: str, digest: hashlib._Hash | None = None) -> np.ndarray:
    """Validated uint8 array from one IDX file (gzipped or not); never reads past the header's size.

    `kind` is "images" (N, 28, 28) or "labels" (N,). The decompressed bytes are fed to `digest`.
    """
    try:
        with _open_idx(path) as stream:
            header, count = _read_idx_header(stream, path, kind)
            payload = _read_idx_payload(stream, path, kind, count)
    except (OSError, EOFError, zlib.error) as exc:
        reason = str(exc) or type(exc).__name__
        raise ToolkitError(f"{path}: corrupt or unreadable: {reason}", ExitCode.DATASET) from None
    if digest is not None:
        digest.update(header)
        digest.update(payload)
    if kind == "labels":
        if payload.size and payload.max() >= NUM_CLASSES:
            raise ToolkitError(
                f"{path}: label {int(payload.max())} outside 0..{NUM_CLASSES - 1}",
                ExitCode.DATASET,
            )
        return payload
    return payload.reshape(count, IMAGE_SIDE, IMAGE_SIDE)


def _read_idx_header(stream, path: Path, kind: str) -> tuple[bytes, int]:
    """(the header's bytes, the item count it announces), refused unless it is `kind`'s."""
    expected_magic = _IMAGES_MAGIC if kind == "images" else _LABELS_MAGIC
    header = _read_exact(stream, 4, path, "IDX header")
    magic = int.from_bytes(header, "big")
    if magic != expected_magic:
        found = {_IMAGES_MAGIC: "an images file", _LABELS_MAGIC: "a labels file"}.get(
            magic, f"magic 0x{magic:08x}"
        )
        raise ToolkitError(
            f"{path}: expected an IDX {kind} file (magic 0x{expected_magic:08x}), found {found}",
            ExitCode.DATASET,
        )
    ndim = magic & 0xFF
    dims_bytes = _read_exact(stream, 4 * ndim, path, "IDX dimensions")
    dims = [int.from_bytes(dims_bytes[i : i + 4], "big") for i in range(0, 4 * ndim, 4)]
    count = dims[0]
    if kind == "images" and dims[1:] != [IMAGE_SIDE, IMAGE_SIDE]:
        raise ToolkitError(
            f"{path}: expected {IMAGE_SIDE}x{IMAGE_SIDE} images, header says {dims[1]}x{dims[2]}",
            ExitCode.DATASET,
        )
    if count > MAX_ITEMS:
        raise ToolkitError(
            f"{path}: header announces {count:,} items, more than the {MAX_ITEMS:,} "
            "this reader accepts; refusing to allocate",
            ExitCode.DATASET,
        )
    return header + dims_bytes, count


def _read_idx_payload(stream, path: Path, kind: str, count: int) -> np.ndarray:
    """The `count` items the header announced, as flat uint8; refuses a short or long file."""
    item_size = IMAGE_SIDE * IMAGE_SIDE if kind == "images" else 1
    payload = np.empty(count * item_size, dtype=np.uint8)
    got = stream.readinto(memoryview(payload))
    while got < payload.size:
        more = stream.readinto(memoryview(payload)[got:])
        if not more:
            raise ToolkitError(
                f"{path}: truncated: header announces {count:,} {kind} "
                f"({payload.size:,} bytes), found {got:,} bytes",
                ExitCode.DATASET,
            )
        got += more
    # One byte more: reaches the gzip trailer, so a bad CRC or truncated stream shows.
    if stream.read(1):
        raise ToolkitError(
            f"{path}: trailing data after the {count:,} {kind} the header announces",
            ExitCode.DATASET,
        )
    return payload


# The pairs this process has read, by their files' identity: a Python session that trains,
# exports and compares inflates the 30 MB of gzip once. The arrays are read-only, so no caller
# changes what the next one gets; a file replaced, rewritten or touched is read again.
_PAIRS_READ: dict[tuple, tuple[np.ndarray, np.ndarray, bool]] = {}


def _identity(path: Path) -> tuple:
    status = path.stat()
    return str(path), status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


def _read_pair(
    folder: Path, images: IdxFile, labels: IdxFile
) -> tuple[np.ndarray, np.ndarray, bool]:
    paths = idx_path(folder, images), idx_path(folder, labels)
    try:
        key = tuple(_identity(path) for path in paths)
    except OSError:  # gone since it was found: reading it says how
        key = None
    if key in _PAIRS_READ:
        return _PAIRS_READ[key]
    pair = _read_pair_from_files(folder, images, labels)
    for array in pair[:2]:
        array.flags.writeable = False
    if key is not None:
        stale = [k for k in _PAIRS_READ if k[0][0] == key[0][0]]  # one version of each file
        for old in stale:
            del _PAIRS_READ[old]
        _PAIRS_READ[key] = pair
    return pair


def _read_pair_from_files(
    folder: Path, images: IdxFile, labels: IdxFile
) -> tuple[np.ndarray, np.ndarray, bool]:
    digests = {idx: hashlib.sha256() for idx in (images, labels)}
    x = read_idx(idx_path(folder, images), "images", digests[images])
    y = read_idx(idx_path(folder, labels), "labels", digests[labels])
    if len(x) != len(y):
        raise ToolkitError(
            f"{idx_path(folder, images)}: {len(x):,} images but "
            f"{idx_path(folder, labels).name} has {len(y):,} labels",
            ExitCode.DATASET,
        )
    verified = all(d.hexdigest() == idx.sha256 for idx, d in digests.items())
    return x, y, verified


def load_dataset(data_dir: Path | None = None, train: bool = True) -> Dataset:
    """Train and test arrays from the first folder that holds the dataset; without `train`,
    the test split only (train arrays None): what evaluating needs, a sixth of the reading."""
    from concurrent.futures import ThreadPoolExecutor

    folder = find_data_dir(data_dir)
    train_x, train_y, train_ok = None, None, True
    # Both splits at once: zlib and hashlib release the GIL for the bulk of the work.
    with ThreadPoolExecutor(1) as reader:
        test = reader.submit(_read_pair, folder, TEST_IMAGES, TEST_LABELS)
        if train:
            train_x, train_y, train_ok = _read_pair(folder, TRAIN_IMAGES, TRAIN_LABELS)
        test_x, test_y, test_ok = test.result()
    return Dataset(
        train_x,
        train_y,
        test_x,
        test_y,
        folder,
        train_ok and test_ok,
        class_names=CLASS_NAMES,
        kind="fashion-mnist",
    )
