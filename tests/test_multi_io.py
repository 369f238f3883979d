"""Models with several inputs and outputs, end to end (issue 25): a detector, a two-input model,
a two-head classifier, a binary classifier and a regression, each exported in every default
variant and compared in every runtime, outputs matched by name, each judged on its own kind."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests import multi_io_models as models
from toolkit.cli import app
from toolkit.errors import ExitCode, ToolkitError

QUICK = {"runs": 5, "max_seconds": 0.05, "batch_size": 4}
CALIBRATION = 32
RUNTIMES = {"keras", "tensorflow", "litert", "onnxruntime", "tflite-micro", "openvino"}


def _export_and_compare(tmp_path_factory, build, name):
    import toolkit

    folder = tmp_path_factory.mktemp(name)
    model_path, data_path = build(folder)
    out = folder / "out"
    manifest = toolkit.export(out, model=model_path, data=data_path, calib_samples=CALIBRATION)
    report = toolkit.compare(out, **QUICK)
    return manifest, report, out


@pytest.fixture(scope="module")
def two_input(tmp_path_factory):
    return _export_and_compare(tmp_path_factory, models.build_two_input, "two_input")


@pytest.fixture(scope="module")
def multi_task(tmp_path_factory):
    return _export_and_compare(tmp_path_factory, models.build_multi_task, "multi_task")


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    # The tiny backbone: `make bench` measures the MobileNetV2 0.35 detector at 96x96.
    def build(folder):
        return models.build_detector(folder, "tiny", side=32)

    return _export_and_compare(tmp_path_factory, build, "detector")


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    def build(folder):
        return models.build_single_head(folder, "sigmoid")

    return _export_and_compare(tmp_path_factory, build, "binary")


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    def build(folder):
        return models.build_single_head(folder, "linear")

    return _export_and_compare(tmp_path_factory, build, "regression")


def _check_every_variant_and_runtime(manifest, report):
    """Every default variant exported (int8 full or mixed), every runtime measured each row's
    outputs; left-out variants are only what a converter cannot build."""
    names = {a.name for a in manifest.artifacts}
    assert manifest.left_out == [], manifest.left_out
    for int8 in ("int8.tflite", "int8.onnx"):
        assert {f"model_{int8}", f"model_mixed_{int8}"} & names
    assert {row.runtime for row in report.rows if row.ok} >= RUNTIMES
    failed = [(row.key, row.error) for row in report.rows if row.status == "failed"]
    assert failed == []
    for row in report.rows:
        if row.ok and row.runtime in RUNTIMES:
            tolerance = manifest.artifact(row.artifact).validation.get("tolerance", {})
            if "min_snr_db" in tolerance and row.agreement is None:
                assert row.snr_db >= tolerance["min_snr_db"], (row.key, row.snr_db)
            if "min_agreement" in tolerance and row.agreement is not None:
                # Another runtime than the validating one may round int8 differently.
                assert row.agreement >= tolerance["min_agreement"] - 0.05, row.key


def test_two_input_model_keeps_its_names_and_orders_outputs_by_name(two_input):
    manifest, report, out = two_input
    _check_every_variant_and_runtime(manifest, report)
    assert [i["name"] for i in manifest.inputs] == ["image", "sensor"]
    assert [i["layout"] for i in manifest.inputs] == ["HWC", "features"]
    # uint8 images scaled to 0..1, the float sensor values as they are
    assert [i["preprocessing"]["scale"] for i in manifest.inputs] == [1 / 255, 1.0]
    assert manifest.outputs[0]["kind"] == "classifier"
    for artifact in manifest.artifacts:
        if artifact.inputs:
            assert {i["name"] for i in artifact.inputs} == {"image", "sensor"}, artifact.name
    int8 = manifest.artifact("model_int8.tflite").inputs
    assert all(entry["dtype"] == "int8" and "quantization" in entry for entry in int8)
    saved = json.loads((out / "report" / "report.json").read_text())
    assert saved["rows"][0]["accuracy"] is not None


def test_two_heads_are_judged_each_with_its_labels(multi_task):
    manifest, report, out = multi_task
    _check_every_variant_and_runtime(manifest, report)
    heads = {o["name"]: o for o in manifest.outputs}
    assert {h["kind"] for h in heads.values()} == {"classifier"}
    assert heads["colour"]["class_names"] == ["red", "blue"]
    assert heads["shape"]["class_names"] == ["0", "1", "2", "3"]
    # TFLite orders the outputs its own way; every runtime's row is matched by name.
    keras_order = [o["name"] for o in manifest.artifact("model.keras").outputs]
    tflite_order = [o["name"] for o in manifest.artifact("model_float32.tflite").outputs]
    assert sorted(keras_order) == sorted(tflite_order) and keras_order != tflite_order
    reference = report.reference_row
    for row in report.rows:
        if row.ok and row.outputs:
            assert set(row.outputs) == {"shape", "colour"}
            worst = min(row.outputs[h]["accuracy"] for h in row.outputs)
            assert row.accuracy == worst  # the row's figure is its worst output's
    float_tflite = next(r for r in report.rows if r.key == ("model_float32.tflite", "litert"))
    for name in ("shape", "colour"):
        assert float_tflite.outputs[name]["agreement"] == 1.0
        assert float_tflite.outputs[name]["accuracy"] == reference.outputs[name]["accuracy"]
    saved = json.loads((out / "report" / "report.json").read_text())
    assert set(saved["rows"][0]["outputs"]) == {"shape", "colour"}
    html = (out / "report" / "report.html").read_text()
    assert "Per output" in html and "<code>colour</code>" in html
    printed = CliRunner().invoke(app, ["predict", "--out", str(out), "--index", "0"])
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()
    assert lines[0] == "test image 0:"
    assert lines[1].startswith("  colour: ") and lines[2].startswith("  shape: ")


def test_detector_heads_are_judged_as_values(detector):
    manifest, report, _ = detector
    _check_every_variant_and_runtime(manifest, report)
    heads = {o["name"]: o for o in manifest.outputs}
    assert heads["boxes"]["shape"][1:] == [128, 4] and heads["scores"]["shape"][1:] == [128, 3]
    assert {h["kind"] for h in heads.values()} == {"values"}
    for row in report.rows:
        if row.ok and row.runtime in RUNTIMES:
            assert row.agreement is None and set(row.outputs) == {"boxes", "scores"}
            assert row.snr_db == min(o["snr_db"] or np.inf for o in row.outputs.values())


def test_binary_classifier_is_judged_at_one_half(binary):
    manifest, report, _ = binary
    _check_every_variant_and_runtime(manifest, report)
    assert manifest.task == "classification" and manifest.class_names == ["dark", "bright"]
    assert manifest.outputs[0]["kind"] == "binary"
    reference = report.reference_row
    assert reference.accuracy is not None and reference.agreement == 1.0
    assert reference.outputs is None  # one output: the row's figures are its figures
    assert len(reference.per_class_accuracy) == 2


def test_regression_gets_the_generic_figures(regression):
    manifest, report, _ = regression
    _check_every_variant_and_runtime(manifest, report)
    assert manifest.task == "other" and manifest.outputs[0]["kind"] == "values"
    for row in report.rows:
        if row.ok and row.runtime in RUNTIMES:
            assert row.accuracy is None and row.agreement is None and row.snr_db is not None


@pytest.fixture(scope="module")
def two_input_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refusals")
    model_path, data_path = models.build_two_input(folder, count=16)
    with np.load(data_path) as data:
        arrays = dict(data)
    return folder, model_path, arrays


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda a: a.pop("x_test/sensor"), "x_test/sensor"),
        (lambda a: a.update({"x_test/image": a["x_test/image"][:5]}), "has 16 items but x_test"),
        (lambda a: a.update({"y_test/boxes": a.pop("y_test")}), "y_test/boxes: the model has no"),
        (lambda a: a.update({"x_test": a.pop("x_test/image")}), "x_test"),
    ],
    ids=["missing input", "item counts differ", "labels of no output", "mixed layouts"],
)
def test_bad_data_is_refused_naming_the_array(two_input_files, change, named):
    import toolkit

    folder, model_path, arrays = two_input_files
    arrays = dict(arrays)
    change(arrays)
    data = folder / "bad.npz"
    np.savez(data, **arrays)
    with pytest.raises(ToolkitError, match=named) as refused:
        toolkit.export(folder / "out", model=model_path, data=data, formats=["tflite"])
    assert refused.value.code == ExitCode.DATASET
    assert not (folder / "out" / "manifest.json").exists()


def test_free_spatial_dimensions_are_fixed_by_input_shape(tmp_path):
    import keras

    import toolkit

    image = keras.Input((None, None, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(image))
    model = keras.Model(image, keras.layers.Dense(2, activation="softmax")(pooled))
    model.save(tmp_path / "free.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x_test=rng.integers(0, 255, (8, 20, 24, 3), dtype=np.uint8))
    common = {"model": tmp_path / "free.keras", "data": tmp_path / "data.npz"}
    with pytest.raises(ToolkitError, match="--input-shape H,W,3") as refused:
        toolkit.export(tmp_path / "out", formats=["tflite"], **common)
    assert refused.value.code == ExitCode.ARTIFACT
    manifest = toolkit.export(
        tmp_path / "out", formats=["tflite"], input_shapes=["20,24,3"], calib_samples=8, **common
    )
    assert manifest.inputs[0]["shape"] == [None, 20, 24, 3]
    assert manifest.artifact("model_float32.tflite").inputs[0]["shape"] == [1, 20, 24, 3]
