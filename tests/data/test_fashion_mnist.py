"""The IDX reader on small files built here: good ones load, every kind of damage is exit code 3.

Every refusal must be a ToolkitError with code 3 (ExitCode.DATASET) whose one-line message starts
with the offending path and says what is wrong; nothing else may escape (no OSError, EOFError,
zlib.error, MemoryError), and nothing may block or allocate what a header merely announces.
"""

from __future__ import annotations

import gc
import gzip
import os
import re
import struct
import threading
import tracemalloc
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import toolkit.data.fashion_mnist as data_module
from toolkit.cli import app
from toolkit.data import normalize
from toolkit.data.fashion_mnist import (
    DEBIAN_DIR,
    IDX_FILES,
    IMAGE_SIDE,
    MAX_ITEMS,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    candidate_dirs,
    find_data_dir,
    idx_path,
    load_dataset,
    read_idx,
)
from toolkit.errors import ExitCode, ToolkitError

IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
PIXELS = IMAGE_SIDE * IMAGE_SIDE
REAL_DATA_DIR = DEBIAN_DIR  # captured before the autouse fixture points DEBIAN_DIR elsewhere
DEFAULT_COUNTS = {TRAIN_IMAGES: 5, TRAIN_LABELS: 5, TEST_IMAGES: 3, TEST_LABELS: 3}


# --- building IDX files ----------------------------------------------------------------------


def sample_images(count: int, side: int = IMAGE_SIDE) -> np.ndarray:
    """Distinct, recognisable pixels, so a reader that shifts or drops bytes is caught."""
    return (np.arange(count * side * side) % 251).astype(np.uint8).reshape(count, side, side)


def sample_labels(count: int) -> np.ndarray:
    return (np.arange(count) % 10).astype(np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic 0x08 (unsigned byte) + ndim, big-endian dims."""
    header = struct.pack(f">I{array.ndim}I", 0x0800 + array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def flip(data: bytes, start: int, stop: int | None = None) -> bytes:
    """`data` with the bytes in [start:stop] inverted (stop defaults to start + 1)."""
    damaged = bytearray(data)
    for i in range(start, stop if stop is not None else start + 1):
        damaged[i] ^= 0xFF
    return bytes(damaged)


def write_idx(folder: Path, idx, data: bytes, *, gzipped: bool = True) -> Path:
    """Writes `data` (already encoded) as the file of `idx`, named .gz or not."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (idx.stem + (".gz" if gzipped else ""))
    path.write_bytes(data)
    return path


def write_dataset(
    folder: Path, *, encode: Callable[[bytes], bytes] = gz, gzipped: bool = True, **counts: int
) -> dict:
    """A full set of four small files in `folder`; `counts` overrides e.g. train_labels=4.

    Returns the arrays written, keyed by IdxFile, to compare what loads against.
    """
    arrays = {}
    for idx in IDX_FILES:
        count = counts.get(idx.stem.split("-")[0] + "_" + idx.kind, DEFAULT_COUNTS[idx])
        arrays[idx] = sample_images(count) if idx.kind == "images" else sample_labels(count)
        write_idx(folder, idx, encode(idx_bytes(arrays[idx])), gzipped=gzipped)
    return arrays


def gz_in_two_members(data: bytes) -> bytes:
    """A valid multi-member gzip (RFC 1952 allows concatenated members), as `cat a.gz b.gz`."""
    return gz(data[:100]) + gz(data[100:])


IMAGES = idx_bytes(sample_images(5))
LABELS = idx_bytes(sample_labels(5))
GOOD_GZ = gz(IMAGES)


@contextmanager
def dataset_error(path: Path, what: str) -> Iterator[pytest.ExceptionInfo]:
    """Expects a ToolkitError, code 3, one line starting with `path: ` and matching `what`."""
    with pytest.raises(ToolkitError) as excinfo:
        yield excinfo
    message = str(excinfo.value)
    assert excinfo.value.code == ExitCode.DATASET == 3, message
    assert message.startswith(f"{path}: "), message
    assert re.search(what, message), message
    assert "\n" not in message


@pytest.fixture(autouse=True)
def isolated_search(tmp_path, monkeypatch):
    """No test may find the machine's real dataset or its Keras cache by accident."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data_module, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(data_module, "KERAS_CACHE_DIR", tmp_path / "no-keras")


@pytest.fixture
def fake_keras_download(monkeypatch):
    """Replaces Keras's downloader with `behaviour`, so no test ever reaches the network."""
    from toolkit.process import import_tensorflow

    import_tensorflow()  # quietly, before keras imports it with its CUDA-probing chatter
    calls = []

    def install(behaviour: Callable[[], object]) -> list:
        def load_data():
            calls.append(True)
            return behaviour()

        monkeypatch.setattr("keras.datasets.fashion_mnist.load_data", load_data)
        return calls

    return install


# --- good files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encode", "gzipped"),
    [
        pytest.param(gz, True, id="gzip"),
        pytest.param(lambda data: data, False, id="uncompressed"),
        pytest.param(gz_in_two_members, True, id="multi-member-gzip"),
        pytest.param(lambda data: data, True, id="uncompressed-named-gz"),
    ],
)
def test_good_files_load_as_uint8_arrays(tmp_path, encode, gzipped):
    written = write_dataset(tmp_path, encode=encode, gzipped=gzipped)
    dataset = load_dataset(tmp_path)
    loaded = {
        TRAIN_IMAGES: dataset.train_images,
        TRAIN_LABELS: dataset.train_labels,
        TEST_IMAGES: dataset.test_images,
        TEST_LABELS: dataset.test_labels,
    }
    for idx, array in loaded.items():
        assert array.dtype == np.uint8
        np.testing.assert_array_equal(array, written[idx])
    assert dataset.train_images.shape == (5, IMAGE_SIDE, IMAGE_SIDE)
    assert dataset.train_labels.shape == (5,)
    assert dataset.test_images.shape == (3, IMAGE_SIDE, IMAGE_SIDE)
    assert dataset.source == tmp_path


def test_evaluation_reads_the_test_split_only(tmp_path):
    written = write_dataset(tmp_path)
    idx_path(tmp_path, TRAIN_IMAGES).write_bytes(b"not an IDX file")  # never opened
    dataset = load_dataset(tmp_path, train=False)
    assert dataset.train_images is None and dataset.train_labels is None
    np.testing.assert_array_equal(dataset.test_images, written[TEST_IMAGES])
    np.testing.assert_array_equal(dataset.test_labels, written[TEST_LABELS])


def test_a_process_inflates_each_file_once_until_it_changes(tmp_path, monkeypatch):
    """train, export and compare called in one Python session read the files once; the arrays
    are read-only, so no caller changes what the next one gets; a rewritten file is read again."""
    written = write_dataset(tmp_path)
    reads = []
    read_files = data_module._read_pair_from_files

    def counted(folder, images, labels):
        reads.append(images.stem)
        return read_files(folder, images, labels)

    monkeypatch.setattr(data_module, "_read_pair_from_files", counted)
    first = load_dataset(tmp_path)
    again = load_dataset(tmp_path)
    assert sorted(reads) == sorted([TRAIN_IMAGES.stem, TEST_IMAGES.stem])
    assert again.test_images is first.test_images
    with pytest.raises(ValueError, match="read-only"):
        first.test_images[0, 0, 0] = 1
    changed = 255 - written[TEST_IMAGES]
    path = write_idx(tmp_path, TEST_IMAGES, gz(idx_bytes(changed)))
    later = path.stat().st_mtime_ns + 10**9  # the same size: only the time tells them apart
    os.utime(path, ns=(later, later))
    np.testing.assert_array_equal(load_dataset(tmp_path, train=False).test_images, changed)
    assert reads.count(TEST_IMAGES.stem) == 2


def test_normalize_gives_float32_in_unit_interval(tmp_path):
    images = read_idx(write_idx(tmp_path, TRAIN_IMAGES, GOOD_GZ), "images")
    scaled = normalize(images)
    assert scaled.dtype == np.float32 and scaled.shape == images.shape
    assert scaled.min() >= 0.0 and scaled.max() <= 1.0
    np.testing.assert_allclose(scaled * 255, images)
    assert normalize(np.array([0, 255], dtype=np.uint8)).tolist() == [0.0, 1.0]


def test_zero_padding_after_gzip_member_is_tolerated(tmp_path):
    """Python's gzip (like gunzip) skips zero bytes after a member: the payload is still exact."""
    path = write_idx(tmp_path, TRAIN_IMAGES, GOOD_GZ + bytes(16))
    np.testing.assert_array_equal(read_idx(path, "images"), sample_images(5))


# --- damaged files ---------------------------------------------------------------------------

CORRUPT = [
    # Not IDX at all.
    pytest.param("images", b"this is not an IDX file", r"found magic 0x74686973", id="garbage"),
    pytest.param("images", b"", r"truncated: expected 4 bytes of IDX header, found 0", id="empty"),
    pytest.param(
        "images", IMAGES[:10], r"truncated: expected 12 bytes of IDX dimensions", id="cut-header"
    ),
    # Broken gzip.
    pytest.param("images", b"\x1f\x8bnot gzip", r"corrupt or unreadable: ", id="gzip-magic-junk"),
    pytest.param(
        "images",
        GOOD_GZ[: len(GOOD_GZ) // 2],
        r"corrupt or unreadable: Compressed file ended",
        id="truncated-gzip",
    ),
    pytest.param(
        "images",
        GOOD_GZ[:-4],
        r"corrupt or unreadable: Compressed file ended",
        id="truncated-gzip-trailer",
    ),
    pytest.param(
        "images", flip(GOOD_GZ, -8, -4), r"corrupt or unreadable: CRC check failed", id="bad-crc"
    ),
    pytest.param(
        "images", flip(GOOD_GZ, -1), r"corrupt or unreadable: Incorrect length", id="bad-isize"
    ),
    pytest.param(
        "images",
        GOOD_GZ + b"garbage",
        r"corrupt or unreadable: Not a gzipped file",
        id="garbage-after-gzip",
    ),
    # More data than the header announces.
    pytest.param("images", IMAGES + b"\0", r"trailing data after the 5 images", id="trailing-raw"),
    pytest.param(
        "images", gz(IMAGES + b"extra"), r"trailing data after the 5 images", id="trailing-in-gzip"
    ),
    pytest.param(
        "labels",
        gz(LABELS) + gz(b"\1"),
        r"trailing data after the 5 labels",
        id="trailing-second-member",
    ),
    # Less data than the header announces.
    pytest.param(
        "images",
        IMAGES[:-PIXELS],
        r"truncated: header announces 5 images \(3,920 bytes\), found 3,136 bytes",
        id="short-raw",
    ),
    pytest.param(
        "images",
        gz(IMAGES[:-PIXELS]),
        r"truncated: header announces 5 images \(3,920 bytes\), found 3,136 bytes",
        id="short-gzip",
    ),
    pytest.param(
        "labels", gz(LABELS[:-2]), r"truncated: header announces 5 labels", id="short-labels"
    ),
    # Wrong kind or shape.
    pytest.param(
        "images",
        gz(LABELS),
        r"expected an IDX images file \(magic 0x00000803\), found a labels file",
        id="labels-as-images",
    ),
    pytest.param(
        "labels",
        GOOD_GZ,
        r"expected an IDX labels file \(magic 0x00000801\), found an images file",
        id="images-as-labels",
    ),
    pytest.param(
        "images",
        gz(idx_bytes(sample_images(5, side=32))),
        r"expected 28x28 images, header says 32x32",
        id="32x32",
    ),
    pytest.param(
        "images",
        struct.pack(">IIII", 0x00000D03, 5, 28, 28) + bytes(4 * 5 * PIXELS),
        r"found magic 0x00000d03",
        id="float-images",
    ),
    # Labels that are not classes.
    pytest.param(
        "labels", idx_bytes(np.array([0, 10, 2], np.uint8)), r"label 10 outside 0\.\.9", id="10"
    ),
    pytest.param(
        "labels", gz(idx_bytes(np.array([255], np.uint8))), r"label 255 outside 0\.\.9", id="255"
    ),
]


@pytest.mark.parametrize(("kind", "content", "what"), CORRUPT)
def test_damaged_file_is_dataset_error(tmp_path, kind, content, what):
    path = tmp_path / f"{kind}-idx.gz"
    path.write_bytes(content)
    with dataset_error(path, what):
        read_idx(path, kind)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize(
    "content",
    [GOOD_GZ, flip(GOOD_GZ, -8, -4), IMAGES, IMAGES + b"\0"],
    ids=["gzip", "gzip-bad-crc", "uncompressed", "uncompressed-trailing"],
)
def test_files_are_closed(tmp_path, content):
    """Every path closes what it opened, even while the error (and its traceback) is alive:
    gzip.GzipFile(fileobj=f) never closes f, so the reader must."""
    path = tmp_path / "file-idx"
    path.write_bytes(content)
    gc.collect()  # earlier tests' garbage must not close files inside this one
    before = open_fds()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        try:
            outcome = read_idx(path, "images")
        except ToolkitError as exc:
            outcome = exc  # keeps the traceback, and with it read_idx's frame, alive
        assert open_fds() == before
        del outcome
        gc.collect()
    assert not [w for w in caught if str(path) in str(w.message)]


@contextmanager
def allocation_limit(max_bytes: int) -> Iterator[None]:
    """Fails if the block's Python/NumPy allocations peak above `max_bytes` (no timing)."""
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < max_bytes, f"peak allocation {peak:,} bytes"


@pytest.mark.parametrize(
    ("kind", "dims"),
    [("images", [4_000_000_000, IMAGE_SIDE, IMAGE_SIDE]), ("labels", [MAX_ITEMS + 1])],
)
def test_huge_header_is_refused_before_allocating(tmp_path, kind, dims):
    magic = IMAGES_MAGIC if kind == "images" else LABELS_MAGIC
    path = write_idx(tmp_path, TRAIN_IMAGES, struct.pack(f">I{len(dims)}I", magic, *dims))
    with (
        allocation_limit(1 << 20),
        dataset_error(path, rf"{dims[0]:,} items.*refusing to allocate"),
    ):
        read_idx(path, kind)


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory) -> Path:
    """A 200 KB gzip of a valid 5-image file followed by 200 MB of zeros, built in 1 MB steps."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunks = [compressor.compress(IMAGES)]
    zeros = bytes(1 << 20)
    chunks += [compressor.compress(zeros) for _ in range(200)]
    chunks.append(compressor.flush())
    path = tmp_path_factory.mktemp("bomb") / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"".join(chunks))
    return path


def test_gzip_bomb_is_trailing_data_without_decompressing_it(gzip_bomb):
    """Reading stops one byte past the announced payload: the 200 MB are never inflated."""
    with allocation_limit(8 << 20), dataset_error(gzip_bomb, r"trailing data after the 5 images"):
        read_idx(gzip_bomb, "images")


# --- folders, missing and special files ------------------------------------------------------


def test_missing_folder(tmp_path):
    folder = tmp_path / "nowhere"
    with dataset_error(folder, r"dataset folder does not exist"):
        load_dataset(folder)


def test_file_given_as_folder(tmp_path):
    not_a_folder = write_idx(tmp_path, TRAIN_IMAGES, GOOD_GZ)
    with dataset_error(not_a_folder, r"not a folder"):
        load_dataset(not_a_folder)


def test_unreadable_folder_name(tmp_path):
    """A name the OS refuses (ENAMETOOLONG; EACCES alike) is exit 3, not an OSError traceback."""
    folder = tmp_path / ("x" * 300)
    with dataset_error(folder, r"cannot read: File name too long"):
        load_dataset(folder)


@pytest.mark.parametrize("missing", IDX_FILES, ids=lambda idx: idx.stem)
def test_missing_file_is_named(tmp_path, missing):
    write_dataset(tmp_path)
    (tmp_path / (missing.stem + ".gz")).unlink()
    with dataset_error(tmp_path, rf"missing {missing.stem} \(\.gz or uncompressed\)$"):
        load_dataset(tmp_path)


@pytest.fixture
def unblock_fifo():
    """Hang guard: if a reader ever blocks opening a FIFO, a writer opens it after 5 s, so the
    test fails on the message (EOF, not "not a regular file") instead of hanging forever."""
    timers = []

    def arm(path: Path) -> None:
        def release():
            with suppress(OSError):  # ENXIO: nobody is blocked reading it
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))

        timers.append(threading.Timer(5, release))
        timers[-1].start()

    yield arm
    for timer in timers:
        timer.cancel()


@pytest.mark.parametrize(
    "make_special",
    [
        pytest.param(lambda path: os.mkfifo(path), id="fifo"),
        pytest.param(lambda path: path.mkdir(), id="folder"),
        pytest.param(lambda path: path.symlink_to("/dev/null"), id="device"),
    ],
)
def test_special_file_in_place_of_a_file(tmp_path, unblock_fifo, make_special):
    write_dataset(tmp_path)
    path = tmp_path / (TRAIN_IMAGES.stem + ".gz")
    path.unlink()
    make_special(path)
    if path.is_fifo():
        unblock_fifo(path)
    with dataset_error(path, r"not a regular file"):
        load_dataset(tmp_path)


@pytest.mark.parametrize(
    ("counts", "images", "labels", "what"),
    [
        ({"train_labels": 4}, TRAIN_IMAGES, TRAIN_LABELS, "5 images but {}.gz has 4 labels"),
        ({"t10k_images": 2}, TEST_IMAGES, TEST_LABELS, "2 images but {}.gz has 3 labels"),
    ],
)
def test_image_and_label_counts_differ(tmp_path, counts, images, labels, what):
    write_dataset(tmp_path, **counts)
    with dataset_error(tmp_path / (images.stem + ".gz"), re.escape(what.format(labels.stem))):
        load_dataset(tmp_path)


def test_swapped_files_name_the_wrong_one(tmp_path):
    """Images and labels files swapped by name: the magic number tells, before any size check."""
    write_dataset(tmp_path)
    images, labels = (tmp_path / (idx.stem + ".gz") for idx in (TRAIN_IMAGES, TRAIN_LABELS))
    images.rename(tmp_path / "swap")
    labels.rename(images)
    (tmp_path / "swap").rename(labels)
    with dataset_error(images, r"expected an IDX images file .*found a labels file"):
        load_dataset(tmp_path)


# --- where the dataset is looked for ---------------------------------------------------------

PLACES = ("flag", "env", "debian", "keras")


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict[str, Path]:
    """Four empty candidate folders: --data-dir, $FASHION_MNIST_DIR, Debian's, Keras's cache."""
    folders = {name: tmp_path / name for name in PLACES}
    for folder in folders.values():
        folder.mkdir()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(folders["env"]))
    monkeypatch.setattr(data_module, "DEBIAN_DIR", folders["debian"])
    monkeypatch.setattr(data_module, "KERAS_CACHE_DIR", folders["keras"])
    return folders


def test_candidate_dirs_order(places):
    assert candidate_dirs(places["flag"]) == [places[name] for name in PLACES]


@pytest.mark.parametrize(
    ("holding", "flag", "env_set", "expected"),
    [
        pytest.param(PLACES, True, True, "flag", id="flag-first"),
        pytest.param(("env", "debian", "keras"), False, True, "env", id="env-next"),
        pytest.param(("debian", "keras"), False, False, "debian", id="debian-next"),
        pytest.param(("debian", "keras"), False, True, "debian", id="empty-env-skipped"),
        pytest.param(("keras",), False, True, "keras", id="keras-last"),
    ],
)
def test_search_order(places, monkeypatch, holding, flag, env_set, expected):
    for name in holding:
        write_dataset(places[name])
    if not env_set:
        monkeypatch.delenv("FASHION_MNIST_DIR")
    assert find_data_dir(places["flag"] if flag else None) == places[expected]
    assert load_dataset(places["flag"] if flag else None).source == places[expected]


def test_explicit_folder_must_hold_the_files(places):
    """--data-dir never silently falls back to another folder."""
    for name in ("env", "debian", "keras"):
        write_dataset(places[name])
    with dataset_error(places["flag"], r"missing train-images-idx3-ubyte, .*t10k-labels"):
        load_dataset(places["flag"])


def test_unreadable_env_folder(places, monkeypatch):
    folder = places["env"] / ("x" * 300)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(folder))
    with dataset_error(folder / (TRAIN_IMAGES.stem + ".gz"), r"cannot read: File name too long"):
        load_dataset()


def test_failed_download_gives_install_hint(places, fake_keras_download):
    def offline():
        raise OSError("network is unreachable")

    calls = fake_keras_download(offline)
    with pytest.raises(ToolkitError) as excinfo:
        load_dataset()
    message = str(excinfo.value)
    assert calls and excinfo.value.code == ExitCode.DATASET
    assert "apt-get install dataset-fashion-mnist" in message
    assert "(OSError)" in message and "\n" not in message
    for name in ("env", "debian", "keras"):
        assert str(places[name]) in message


def test_download_lands_in_keras_cache(places, fake_keras_download):
    calls = fake_keras_download(lambda: write_dataset(places["keras"]))
    assert load_dataset().source == places["keras"]
    assert calls


def test_download_elsewhere_is_dataset_error(places, fake_keras_download):
    """Keras may cache under $KERAS_HOME or /tmp/.keras: not finding the files there is exit 3."""
    fake_keras_download(lambda: None)
    with dataset_error(places["keras"], r"missing train-images-idx3-ubyte"):
        load_dataset()


# --- verified --------------------------------------------------------------------------------


@pytest.mark.skipif(
    not all(data_module.idx_path(REAL_DATA_DIR, idx) for idx in IDX_FILES),
    reason=f"no Fashion-MNIST in {REAL_DATA_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_real_dataset_is_verified():
    dataset = load_dataset(REAL_DATA_DIR)
    assert dataset.verified is True
    assert dataset.train_images.shape == (60_000, IMAGE_SIDE, IMAGE_SIDE)
    assert dataset.test_images.shape == (10_000, IMAGE_SIDE, IMAGE_SIDE)
    assert dataset.train_labels.shape == (60_000,) and dataset.test_labels.shape == (10_000,)


def test_other_idx_data_loads_unverified(tmp_path):
    """Digests that differ from the published ones are a warning (the CLI's), not an error."""
    write_dataset(tmp_path)
    assert load_dataset(tmp_path).verified is False


# --- property: nothing but a valid array or a ToolkitError ------------------------------------

PROPERTY = settings(max_examples=200, deadline=None, database=None)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """One file rewritten by every example (function-scoped tmp_path does not suit @given)."""
    return tmp_path_factory.mktemp("property") / "file-idx"


def read_or_error(path: Path, content: bytes, kind: str = "images") -> np.ndarray | None:
    """read_idx's result checked for shape and dtype, or None after a well-formed ToolkitError."""
    path.write_bytes(content)
    try:
        array = read_idx(path, kind)
    except ToolkitError as exc:
        assert exc.code == ExitCode.DATASET and str(exc).startswith(f"{path}: ")
        return None
    assert array.dtype == np.uint8
    if kind == "images":
        assert array.ndim == 3 and array.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE)
    else:
        assert array.ndim == 1 and (array.size == 0 or array.max() < 10)
    return array


@pytest.mark.parametrize("kind", ["images", "labels"])
@PROPERTY
@given(content=st.one_of(st.binary(max_size=2048), st.binary(max_size=2048).map(gz)))
def test_arbitrary_bytes(scratch, kind, content):
    read_or_error(scratch, content, kind)


@PROPERTY
@given(data=st.data(), count=st.integers(0, 3), compress=st.booleans())
def test_arbitrary_bytes_after_valid_header(scratch, data, count, compress):
    """Loads exactly when the payload has the announced size, and then gives those bytes."""
    exact = count * PIXELS
    size = data.draw(st.one_of(st.just(exact), st.integers(0, 4 * PIXELS)), label="size")
    payload = data.draw(st.binary(min_size=size, max_size=size), label="payload")
    content = struct.pack(">IIII", IMAGES_MAGIC, count, IMAGE_SIDE, IMAGE_SIDE) + payload
    array = read_or_error(scratch, gz(content) if compress else content)
    assert (array is not None) == (size == exact)
    if array is not None:
        assert array.shape == (count, IMAGE_SIDE, IMAGE_SIDE) and array.tobytes() == payload


@PROPERTY
@given(
    edits=st.lists(st.tuples(st.integers(0, len(GOOD_GZ) - 1), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, len(GOOD_GZ)),
)
def test_damaged_gzip(scratch, edits, cut):
    """Edits and a cut anywhere in a good .gz: a ToolkitError, or (harmless edits, e.g. to the
    gzip header's mtime) exactly the original images: the CRC lets no changed pixel through."""
    damaged = bytearray(GOOD_GZ)
    for index, value in edits:
        damaged[index] = value
    array = read_or_error(scratch, bytes(damaged[:cut]))
    if array is not None:
        np.testing.assert_array_equal(array, sample_images(5))


# --- the command line ------------------------------------------------------------------------


def break_crc(folder: Path) -> Path:
    write_dataset(folder)
    path = folder / (TRAIN_IMAGES.stem + ".gz")
    path.write_bytes(flip(path.read_bytes(), -8, -4))
    return path


def fifo_for_labels(folder: Path) -> Path:
    write_dataset(folder)
    path = folder / (TEST_LABELS.stem + ".gz")
    path.unlink()
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "breakage",
    [
        pytest.param(lambda folder: folder, id="missing-folder"),
        pytest.param(break_crc, id="bad-crc"),
        pytest.param(fifo_for_labels, id="fifo"),
    ],
)
def test_cli_train_exits_3_with_one_line(tmp_path, unblock_fifo, breakage):
    broken = tmp_path / "broken"
    named = breakage(broken)
    if named.is_fifo():
        unblock_fifo(named)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["train", "--data-dir", str(broken), "--out", str(out)])
    assert result.exit_code == 3, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {named}: "), result.output
    assert "Traceback" not in result.output
    assert not (out / "model.keras").exists()
