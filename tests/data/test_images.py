"""The image-folder reader: both layouts, conversion to the model's shape, hostile folders."""

import numpy as np
import pytest
from PIL import Image

from toolkit.data import load_data
from toolkit.errors import ExitCode, ToolkitError


def _image(path, size=(8, 6), mode="RGB", value=200):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 0)).save(path)
    return path


def test_train_and_test_splits_with_sorted_class_names_and_resizing(tmp_path):
    for split in ("train", "test"):
        _image(tmp_path / split / "dog" / "a.png")
        _image(tmp_path / split / "cat" / "b.jpg", size=(16, 12))
        _image(tmp_path / split / "cat" / "c.gif", mode="L")
    (tmp_path / "test" / "cat" / "notes.txt").write_text("not an image: ignored")
    dataset = load_data(tmp_path, image_shape=(6, 8, 3))
    assert dataset.class_names == ("cat", "dog") and dataset.kind == "images"
    assert dataset.test_images.shape == (3, 6, 8, 3) and dataset.test_images.dtype == np.uint8
    assert dataset.test_labels.tolist() == [0, 0, 1] and dataset.train_labels.tolist() == [0, 0, 1]
    assert dataset.notes == (f"{tmp_path}: 2 images resized to 8x6",)  # one per split
    grayscale = load_data(tmp_path, image_shape=(6, 8))
    assert grayscale.test_images.shape == (3, 6, 8)


def test_class_folders_alone_are_evaluation_data(tmp_path):
    _image(tmp_path / "a" / "1.bmp")
    dataset = load_data(tmp_path, image_shape=(6, 8, 1))
    assert dataset.train_images is None and dataset.test_images.shape == (1, 6, 8, 1)


@pytest.mark.parametrize(
    ("make", "where", "says"),
    [
        (lambda root: None, ".", "no class folders"),
        (lambda root: (root / "cat").mkdir(), "cat", "no images"),
        (
            lambda root: _image(root / "cat" / "x.png").write_bytes(b"\x89PNG broken"),
            "cat/x.png",
            "not a readable image",
        ),
        (
            lambda root: (
                _image(root / "train" / "cat" / "1.png"),
                _image(root / "test" / "dog" / "1.png"),
            ),
            ".",
            "train and test class folders differ (only in train: ['cat']; only in test: ['dog'])",
        ),
    ],
    ids=["empty", "empty class", "unreadable image", "splits differ"],
)
def test_hostile_folders_are_refused_naming_the_place(tmp_path, make, where, says):
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    with pytest.raises(ToolkitError) as caught:
        load_data(root, image_shape=(6, 8, 3))
    assert caught.value.code == ExitCode.DATASET
    place = root if where == "." else root / where
    assert str(caught.value).startswith(f"{place}: ") and says in str(caught.value)


def test_a_decompression_bomb_is_refused(tmp_path):
    path = tmp_path / "cls" / "bomb.png"
    path.parent.mkdir()
    Image.new("1", (20000, 12000)).save(path)  # 240 M pixels, a few KB on disk
    with pytest.raises(ToolkitError, match="not a readable image"):
        load_data(tmp_path, image_shape=(6, 8, 3))


def _within(seconds: int):
    """Fails the test instead of hanging it when a read blocks (a FIFO opened for reading)."""
    import contextlib
    import signal

    def timed_out(signum, frame):
        raise TimeoutError(f"blocked for {seconds} s")

    @contextlib.contextmanager
    def guard():
        previous = signal.signal(signal.SIGALRM, timed_out)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)

    return guard()


def test_a_fifo_among_the_images_is_refused_without_blocking(tmp_path):
    import os

    _image(tmp_path / "test" / "cat" / "a.png")
    fifo = tmp_path / "test" / "cat" / "x.png"
    os.mkfifo(fifo)
    with _within(20), pytest.raises(ToolkitError) as caught:
        load_data(tmp_path, image_shape=(6, 8, 3))
    assert caught.value.code == ExitCode.DATASET
    assert str(caught.value) == f"{fifo}: not a regular file (a FIFO, device or folder)"


def test_the_data_digest_skips_fifos_and_link_loops(tmp_path):
    import os

    from toolkit.data.checks import data_sha256

    _image(tmp_path / "cat" / "a.png")
    before = data_sha256(tmp_path)
    os.mkfifo(tmp_path / "cat" / "notes.fifo")
    (tmp_path / "cat" / "loop").symlink_to(tmp_path / "cat" / "loop")
    (tmp_path / "cat" / "up").symlink_to(tmp_path)
    with _within(20):
        assert data_sha256(tmp_path) == before
    (tmp_path / "cat" / "a.png").write_bytes(b"changed")
    assert data_sha256(tmp_path) != before


def test_sixteen_bit_pngs_are_scaled_by_their_range_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 30000, 65535, 128]], np.uint16)
    path = tmp_path / "test" / "cat" / "deep.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    dataset = load_data(tmp_path, image_shape=(1, 6, 1))
    assert dataset.test_images.reshape(-1).tolist() == [0, 1, 4, 117, 255, 0]
    colour = load_data(tmp_path, image_shape=(1, 6, 3))  # as grey in each channel
    assert colour.test_images[0, 0, :, 1].tolist() == [0, 1, 4, 117, 255, 0]


def test_images_in_subfolders_are_read_and_link_loops_end_nothing(tmp_path):
    _image(tmp_path / "test" / "cat" / "a.png")
    _image(tmp_path / "test" / "cat" / "indoor" / "deeper" / "b.png")
    _image(tmp_path / "test" / "dog" / "c.png")
    (tmp_path / "test" / "cat" / "indoor" / "loop").symlink_to(tmp_path / "test")
    (tmp_path / "test" / "dog" / "self").symlink_to(tmp_path / "test" / "dog" / "self")
    (tmp_path / "test" / ".hidden").mkdir()
    dataset = load_data(tmp_path, image_shape=(6, 8, 3))
    assert dataset.class_names == ("cat", "dog") and dataset.test_labels.tolist() == [0, 0, 1]


def test_a_link_loop_among_class_folders_is_a_data_problem(tmp_path):
    _image(tmp_path / "test" / "cat" / "a.png")
    (tmp_path / "test" / "dog").symlink_to(tmp_path / "test" / "dog")  # a loop, no images
    (tmp_path / "train").symlink_to(tmp_path / "train")
    dataset = load_data(tmp_path, image_shape=(6, 8, 3))
    assert dataset.class_names == ("cat",) and dataset.train_images is None
    unreadable = tmp_path / "test" / "cat" / "b.png"
    unreadable.symlink_to(unreadable)
    with pytest.raises(ToolkitError) as caught:
        load_data(tmp_path, image_shape=(6, 8, 3))
    assert caught.value.code == ExitCode.DATASET and str(caught.value).startswith(f"{unreadable}:")
