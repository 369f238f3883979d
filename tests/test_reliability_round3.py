"""Issue 26, the data side and export's own checks: each class of broken promise found by the
third hostile-user round, held by a small model built in the test."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from toolkit.errors import ExitCode, ToolkitError


def _save(model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    return folder / "model.keras"


def _dense_model(inputs: int, outputs: int, name: str = "scores", **dense):
    from toolkit.process import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((inputs,)),
            keras.layers.Dense(outputs, activation="softmax", name=name, **dense),
        ]
    )


def _refused(code: ExitCode, **export) -> str:
    import toolkit

    with pytest.raises(ToolkitError) as caught:
        toolkit.export(**export, figures=False)
    assert caught.value.code == code and "\n" not in str(caught.value)
    assert not (export["out"] / "manifest.json").exists()
    return str(caught.value)


def test_the_search_stops_at_an_interrupt_between_trials():
    from toolkit import interrupts
    from toolkit.quantization.search import search_float_layers

    built = []

    def build(float_layers):
        built.append(float_layers)
        if len(built) == 2:  # SIGTERM arrives while the second trial converts
            os.kill(os.getpid(), signal.SIGTERM)
        return float_layers

    with interrupts.deferred(), pytest.raises(KeyboardInterrupt):
        search_float_layers([f"layer{i}" for i in range(50)], build, lambda model: ({}, False))
    assert len(built) == 2


@pytest.mark.parametrize(("names", "outputs"), [(3, 10), (10, 3)])
def test_class_names_are_counted_against_the_model_outputs(tmp_path, names, outputs):
    model = _save(_dense_model(4, outputs), tmp_path)
    data = tmp_path / "data.npz"
    class_names = np.array([f"class {i}" for i in range(names)])
    np.savez(data, x_test=np.ones((2, 4), np.float32), y_test=[0, 1], class_names=class_names)
    says = _refused(ExitCode.DATASET, out=tmp_path / "out", model=model, data=data)
    assert says == f"{data}: class_names: {names} class names for {outputs} classes"


@pytest.mark.parametrize("where", ["class_names", "outputs"])
def test_a_manifest_whose_class_names_miscount_the_scores_is_refused(exported_copy, where):
    """A hand-edited manifest: `predict` named a true class by the label's position in the list."""
    import toolkit

    path = exported_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    if where == "class_names":
        manifest["class_names"] = manifest["class_names"][:3]
    else:
        manifest["outputs"][0]["class_names"] = manifest["outputs"][0]["class_names"][:3]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ToolkitError) as caught:
        toolkit.predict(out=exported_copy, index=[0], verify=False)
    assert caught.value.code == ExitCode.ARTIFACT
    assert str(caught.value).startswith(f"{path}: not a valid toolkit manifest (")
    assert "3 " in str(caught.value) and "10 scores" in str(caught.value)


def test_scaled_inputs_that_overflow_float32_are_refused_before_converting(tmp_path):
    model = _save(_dense_model(4, 2), tmp_path)
    finite = tmp_path / "finite.npz"
    np.savez(finite, x_test=np.full((2, 4), 1e300), y_test=[0, 1])  # finite, not in float32
    says = _refused(ExitCode.DATASET, out=tmp_path / "out", model=model, data=finite)
    assert says.startswith(f"{finite}: items scaled by 1 (offset 0) overflow float32")
    pixels = tmp_path / "pixels.npz"
    np.savez(pixels, x_test=np.full((2, 4), 255, np.uint8), y_test=[0, 1])
    says = _refused(ExitCode.DATASET, out=tmp_path / "out", model=model, data=pixels, scale=1e37)
    assert says.startswith(f"{pixels}: items scaled by 1e+37 (offset 0) overflow float32")


@pytest.mark.parametrize("name", ["cost $", "a<b", "two words"])
def test_layer_names_tensorflow_refuses_are_exit_4_naming_the_layer(tmp_path, name):
    model = _save(_dense_model(4, 2, name=name), tmp_path)
    data = tmp_path / "data.npz"
    np.savez(data, x_test=np.ones((2, 4), np.float32), y_test=[0, 1])
    says = _refused(ExitCode.ARTIFACT, out=tmp_path / "out", model=model, data=data)
    assert says.startswith(f"{model}: layer {name!r} has a name TensorFlow refuses")


def test_an_unreachable_tolerance_is_a_left_out_variant_and_the_manifest_is_strict_json(
    tmp_path,
):
    """Two inputs a hair apart decide the class: int8 input quantization ties them, so no
    choice of float layers reaches an agreement of 1."""
    import toolkit

    apart = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]], np.float32)
    from keras import initializers

    model = _save(_dense_model(2, 2, kernel_initializer=initializers.Constant(apart)), tmp_path)
    rng = np.random.default_rng(0)
    first = rng.random(64)
    x = np.stack([first, first + np.where(rng.random(64) < 0.5, 1e-4, -1e-4)], 1)
    data = tmp_path / "data.npz"
    np.savez(data, x_test=x.astype(np.float32), y_test=np.arange(64) % 2)
    out = tmp_path / "out"
    manifest = toolkit.export(
        out,
        model=model,
        data=data,
        formats=["tflite"],
        min_agreement=1.0,
        figures=False,
    )
    left_out = {entry["artifact"]: entry["reason"] for entry in manifest.left_out}
    assert "unreachable: still failing with" in left_out["model_int8.tflite"]
    assert not (out / "model_mixed_int8.tflite").exists()
    assert not (out / "model_int8.tflite").exists()

    def no_constant(name):
        raise AssertionError(f"manifest.json holds {name}")

    json.loads((out / "manifest.json").read_text(), parse_constant=no_constant)
    from dataclasses import replace

    from toolkit.exporting.pipeline import manifest_json

    unbounded = replace(manifest, tolerances={**manifest.tolerances, "max_accuracy_drop": np.inf})
    written = json.loads(manifest_json(unbounded), parse_constant=no_constant)
    assert written["tolerances"]["max_accuracy_drop"] is None  # unbounded: no bound


def test_the_mixed_precision_warning_names_the_metric_judged():
    from toolkit.exporting.validation import judged_metric

    assert judged_metric({"snr_db": 24.91, "agreement": None}) == "SNR 24.9 dB"
    assert judged_metric({"agreement": 0.97125, "snr_db": 30.0}) == "agreement 0.9712"


def test_a_fifo_in_the_data_is_refused_by_export_and_compare(exported_copy, tmp_path):
    import toolkit
    from tests.data.test_images import _image, _within

    folder = tmp_path / "images"
    _image(folder / "test" / "cat" / "a.png", size=(28, 28), mode="L")
    fifo = folder / "test" / "cat" / "x.png"
    os.mkfifo(fifo)
    with _within(60), pytest.raises(ToolkitError) as caught:
        toolkit.compare(exported_copy, data=folder, runtimes=["litert"])
    assert caught.value.code == ExitCode.DATASET and str(caught.value).startswith(f"{fifo}: ")
    npz = tmp_path / "data.npz"
    os.mkfifo(npz)
    with _within(60):
        model = exported_copy / "model.keras"
        says = _refused(ExitCode.DATASET, out=tmp_path / "out", model=model, data=npz)
    assert says == f"{npz}: not a regular file (a FIFO, device or folder)"
