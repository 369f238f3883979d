"""The .npz reader: the keras.datasets layout accepted, every kind of bad file refused (exit 3)."""

import numpy as np
import pytest

from toolkit.data import Preprocessing, load_data
from toolkit.errors import ExitCode, ToolkitError

TWO_ITEMS, TWO_NAMES = {"x_test": np.ones((2, 3))}, np.array(["a", "b"])


def _write(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def test_keras_datasets_layout_is_read_with_labels_and_class_names(tmp_path):
    x = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    path = _write(
        tmp_path,
        x_train=x,
        y_train=np.array([[1], [0]]),  # cifar10 stores labels as (N, 1)
        x_test=x,
        y_test=np.array([0, 1]),
        class_names=np.array(["cat", "dog"]),
    )
    dataset = load_data(path)
    assert dataset.kind == "npz" and dataset.class_names == ("cat", "dog")
    assert dataset.train_labels.tolist() == [1, 0] and dataset.labelled
    assert dataset.preprocess == Preprocessing(1 / 255)  # 8-bit data: pixels to 0..1
    assert dataset.inputs(x).max() == pytest.approx(x.max() / 255)


def test_unlabelled_float_data_gets_identity_preprocessing(tmp_path):
    path = _write(tmp_path, x_test=np.ones((3, 640), np.float32))
    dataset = load_data(path)
    assert not dataset.labelled and dataset.train_images is None
    assert dataset.preprocess == Preprocessing(1.0)


@pytest.mark.parametrize(
    ("arrays", "says"),
    [
        ({"x_train": np.ones((2, 3))}, "no x_test array (found x_train)"),
        ({"x_test": np.array([["a"], ["b"]])}, "must hold numbers"),
        ({"x_test": np.array([np.nan, 1.0]).reshape(2, 1)}, "NaN or infinity"),
        ({"x_test": np.ones(4)}, "must be (items, ...)"),
        ({"x_test": np.ones((2, 3)), "y_test": np.array([0.5, 1.0])}, "integer class indices"),
        ({"x_test": np.ones((2, 3)), "y_test": np.array([0, 1, 1])}, "shape (3,) for 2 items"),
        ({"x_test": np.ones((2, 3)), "y_test": np.array([0, -1])}, "negative label"),
        (
            {
                "x_test": np.ones((2, 3)),
                "y_test": np.array([0, 2]),
                "class_names": np.array(["a", "b"]),
            },
            "label 2, outside 0..1",
        ),
        ({"x_test": np.ones((2, 3)), "x_train": np.ones((2, 4))}, "x_train items (4,) differ"),
    ],
)
def test_bad_arrays_are_refused_naming_the_file(tmp_path, arrays, says):
    path = _write(tmp_path, **arrays)
    with pytest.raises(ToolkitError) as caught:
        load_data(path)
    assert caught.value.code == ExitCode.DATASET
    assert str(caught.value).startswith(f"{path}: ") and says in str(caught.value)


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x_test=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ToolkitError, match="object arrays .*never unpickled") as caught:
        load_data(path)
    assert caught.value.code == ExitCode.DATASET


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 not really a zip", b"\x93NUMPY junk"])
def test_a_file_that_is_not_an_npz_is_refused(tmp_path, content):
    path = tmp_path / "data.npz"
    path.write_bytes(content)
    with pytest.raises(ToolkitError, match="not a readable .npz"):
        load_data(path)


def test_a_fifo_named_npz_is_refused_without_reading(tmp_path):
    import os

    path = tmp_path / "data.npz"
    os.mkfifo(path)
    with pytest.raises(ToolkitError, match="not a regular file"):
        load_data(path)


def test_compare_with_bad_data_is_exit_3_with_one_line(exported_copy, tmp_path):
    from typer.testing import CliRunner

    from toolkit.cli import app

    bad = _write(tmp_path, x_test=np.ones((2, 32, 32, 3), np.uint8))
    result = CliRunner().invoke(app, ["compare", "--out", str(exported_copy), "--data", str(bad)])
    assert result.exit_code == 3, result.output
    assert "data items have shape (32, 32, 3) but the model expects (28, 28)" in result.output
    assert len(result.output.strip().splitlines()) == 1
