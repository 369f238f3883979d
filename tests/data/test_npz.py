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


def _zip(tmp_path, members: dict[str, bytes], compression=0):
    import zipfile

    path = tmp_path / "data.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy(array, shape=None) -> bytes:
    """`array` as .npy bytes, its header claiming `shape` when given."""
    import io

    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False}
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, {**header, "shape": shape or array.shape})
    return stream.getvalue() + array.tobytes()


def _refused(path) -> str:
    with pytest.raises(ToolkitError) as caught:
        load_data(path)
    assert caught.value.code == ExitCode.DATASET
    assert str(caught.value).startswith(f"{path}: ") and "\n" not in str(caught.value)
    return str(caught.value)


def test_a_header_claiming_a_huge_shape_is_refused_before_allocating(tmp_path):
    path = _zip(tmp_path, {"x_test.npy": _npy(np.ones((2, 3)), shape=(10**12, 10**6))})
    says = _refused(path)
    assert "member x_test.npy: its .npy header claims (1000000000000, 1000000)" in says


def test_raw_members_are_refused_naming_the_member(tmp_path):
    good = _npy(np.ones((2, 3)))
    assert "member 'notes.txt' is not a .npy array" in _refused(
        _zip(tmp_path, {"x_test.npy": good, "notes.txt": b"hello"})
    )
    assert "member y_test.npy: not a .npy array" in _refused(
        _zip(tmp_path, {"x_test.npy": good, "y_test.npy": b"raw bytes, no header"})
    )


def test_a_zip_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    import zipfile

    from toolkit.data import npz

    monkeypatch.setattr(npz, "NPZ_MAX_BYTES", 2**20)  # the cap, scaled down for a small test
    zeros = _npy(np.zeros((8, 2**16), np.uint8))  # 512 KiB each, deflated to a few hundred bytes
    path = _zip(tmp_path, {"x_test.npy": zeros, "x_train.npy": zeros, "y_train.npy": zeros}, 8)
    assert path.stat().st_size < 10_000
    says = _refused(path)
    assert "member x_train.npy inflates to 524,416 bytes, past the 1,048,576 bytes" in says
    assert zipfile.is_zipfile(path)


def test_a_text_file_named_npz_is_not_a_zip(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("x_test = [1, 2, 3]\n")
    assert "not a readable .npz file (not a zip archive)" in _refused(path)


def test_uint64_labels_past_the_class_count_name_the_array(tmp_path):
    huge = np.array([0, 2**64 - 1], np.uint64)  # cast to int64, it would read as -1
    says = _refused(_write(tmp_path, x_test=np.ones((2, 3)), y_test=huge))
    assert "y_test holds label 18446744073709551615" in says
    named = _write(tmp_path, x_test=np.ones((2, 3)), y_test=huge, class_names=TWO_NAMES)
    assert "y_test holds label 18446744073709551615, outside 0..1" in _refused(named)


def test_bytes_class_names_are_decoded_or_refused(tmp_path):
    names = np.array([b"T-shirt/top", "Äpfel".encode()])
    path = _write(tmp_path, x_test=np.ones((2, 3)), class_names=names)
    assert load_data(path).class_names == ("T-shirt/top", "Äpfel")
    latin1 = _write(tmp_path, x_test=np.ones((2, 3)), class_names=np.array([b"\xe4", b"b"]))
    assert "class_names: not UTF-8 text" in _refused(latin1)


def test_fortran_order_and_big_endian_members_read_as_numpy_does(tmp_path):
    x = np.asfortranarray(np.arange(12, dtype=">f4").reshape(3, 4))
    dataset = load_data(_write(tmp_path, x_test=x, y_test=np.array([2, 0, 1], ">i8")))
    assert np.array_equal(dataset.test_images, x) and dataset.test_labels.tolist() == [2, 0, 1]
