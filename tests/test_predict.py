"""predict: image files and test-set indices through any artifact."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.data import CLASS_NAMES

runner = CliRunner()


@pytest.mark.parametrize("artifact", ["model.keras", "model_int8.tflite", "model_float32.onnx"])
def test_predict_png_written_by_the_test(exported_dir, dataset, tmp_path, artifact):
    png = tmp_path / "trouser.png"
    index = int(np.flatnonzero(dataset.test_labels == 1)[0])  # trousers are the easiest class
    Image.fromarray(dataset.test_images[index]).save(png)
    result = runner.invoke(
        app,
        [
            "predict",
            str(png),
            "--out",
            str(exported_dir),
            "--artifact",
            str(exported_dir / artifact),
            "--top",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{png}: Trouser" in result.output
    assert result.output.count("%") == 2


def test_predict_resizes_with_a_warning_and_plots(exported_dir, dataset, tmp_path):
    big = tmp_path / "big.png"
    Image.fromarray(dataset.test_images[0]).resize((56, 56)).save(big)
    plot = tmp_path / "figure.png"
    result = runner.invoke(
        app,
        [
            "predict",
            str(big),
            "--index",
            "0",
            "--index",
            "1",
            "--out",
            str(exported_dir),
            "--plot",
            str(plot),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "resized from 56x56 to 28x28" in result.output
    assert f"(true: {CLASS_NAMES[dataset.test_labels[0]]})" in result.output
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "give image files"),
        (["missing.png"], 2, "missing.png: image not found"),
        (["--index", "10000"], 2, ""),
    ],
)
def test_predict_bad_input(exported_dir, args, code, message):
    result = runner.invoke(app, ["predict", *args, "--out", str(exported_dir)])
    assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output


def predict_with(out, artifact, *extra):
    args = ["predict", "--index", "0", "--out", str(out), "--artifact", str(out / artifact)]
    return runner.invoke(app, [*args, *extra])


def test_predict_refuses_a_changed_artifact(exported_copy):
    with open(exported_copy / "model_float32.tflite", "ab") as f:
        f.write(b"\0")
    result = predict_with(exported_copy, "model_float32.tflite")
    assert result.exit_code == 4 and "changed since export" in result.output


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([["a"] * 28] * 28), "expected numbers"),
        (np.full((28, 28), np.nan), "NaN or infinity"),
        (np.zeros((32, 32)), "expected an array of shape (28, 28), found shape (32, 32)"),
    ],
)
def test_predict_refuses_unusable_npy(exported_dir, tmp_path, array, message):
    path = tmp_path / "image.npy"
    np.save(path, array)
    result = runner.invoke(app, ["predict", str(path), "--out", str(exported_dir)])
    assert result.exit_code == 2 and message in result.output


def test_predict_refuses_an_unlisted_artifact_beside_a_manifest(exported_copy):
    import shutil

    shutil.copy(exported_copy / "model_float32.tflite", exported_copy / "old_model.tflite")
    result = predict_with(exported_copy, "old_model.tflite")
    assert result.exit_code == 4 and "not listed in" in result.output
    assert predict_with(exported_copy, "old_model.tflite", "--no-verify").exit_code == 0
