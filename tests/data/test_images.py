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
