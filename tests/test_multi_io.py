"""A model with an image and a sensor vector, end to end (issue 25): its names kept by every
format, each input preprocessed as its own, every runtime fed by name; bad data refused naming
the array; free spatial dimensions fixed by --input-shape."""

import json

import numpy as np
import pytest

from tests import multi_io_models as models
from toolkit.errors import ExitCode, ToolkitError


@pytest.fixture(scope="module")
def two_input(tmp_path_factory):
    # Every format and runtime of a model with two inputs is the multi-task model's test
    # (test_multi_io_heads); this one's names, layouts and scales in the desktop formats.
    build = models.build_two_input
    return models.export_and_compare(tmp_path_factory, build, "two_input", **models.DESKTOP)


def test_two_input_model_keeps_its_names_and_orders_outputs_by_name(two_input):
    manifest, report, out = two_input
    models.check_judged_rows(manifest, report)
    assert {row.runtime for row in report.rows if row.ok} == set(models.DESKTOP["runtimes"])
    assert [i["name"] for i in manifest.inputs] == ["image", "sensor"]
    assert [i["layout"] for i in manifest.inputs] == ["HWC", "features"]
    # uint8 images scaled to 0..1, the float sensor values as they are
    assert [i["preprocessing"]["scale"] for i in manifest.inputs] == [1 / 255, 1.0]
    assert manifest.outputs[0]["kind"] == "classifier"
    for artifact in manifest.artifacts:
        if artifact.inputs:
            assert {i["name"] for i in artifact.inputs} == {"image", "sensor"}, artifact.name
    # the full int8 file, or its mixed replacement when a few steps' near-tied outputs miss
    # the tolerance: either takes int8 inputs
    names = {a.name for a in manifest.artifacts}
    int8_name = next(n for n in ("model_int8.tflite", "model_mixed_int8.tflite") if n in names)
    int8 = manifest.artifact(int8_name).inputs
    assert all(entry["dtype"] == "int8" and "quantization" in entry for entry in int8)
    saved = json.loads((out / "report" / "report.json").read_text())
    assert saved["rows"][0]["accuracy"] is not None


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
        toolkit.export(
            folder / "out", model=model_path, data=data, formats=["tflite"], figures=False
        )
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
    common = {"model": tmp_path / "free.keras", "data": tmp_path / "data.npz", "figures": False}
    with pytest.raises(ToolkitError, match="--input-shape H,W,3") as refused:
        toolkit.export(tmp_path / "out", formats=["tflite"], **common)
    assert refused.value.code == ExitCode.ARTIFACT
    manifest = toolkit.export(
        tmp_path / "out", formats=["tflite"], input_shapes=["20,24,3"], calib_samples=8, **common
    )
    assert manifest.inputs[0]["shape"] == [None, 20, 24, 3]
    assert manifest.artifact("model_float32.tflite").inputs[0]["shape"] == [1, 20, 24, 3]


def test_a_binary_output_is_judged_at_one_half_and_rows_keep_the_worst_figures():
    from toolkit.metrics import compare_outputs, flip_details, worst_of

    reference = np.array([[0.9], [0.2], [0.6], [0.45]], np.float32)
    outputs = np.array([[0.8], [0.3], [0.4], [0.55]], np.float32)
    binary = compare_outputs(outputs, reference, np.array([1, 0, 1, 1]), class_scores=True)
    assert (binary.agreement, binary.flipped, binary.accuracy) == (0.5, 2, 0.75)
    flips = flip_details(outputs, reference, np.array([1, 0, 1, 1]))
    # The reference's probability of its own class: 0.6 for class 1, 1 - 0.45 for class 0.
    assert [(f["index"], f["reference_probability"]) for f in flips["top_flips"]] == [
        (2, pytest.approx(0.6)),
        (3, pytest.approx(0.55)),
    ]
    boxes = compare_outputs(reference * 2, reference * 2, class_scores=False)
    worst = worst_of({"boxes": boxes, "label": binary})
    assert worst.accuracy == 0.75 and worst.max_abs_diff == binary.max_abs_diff
    assert worst.snr_db == binary.snr_db and worst.cosine == binary.cosine


def test_a_gallery_shows_the_first_image_shaped_input():
    from toolkit.arrays import packed
    from toolkit.reporting.galleries import gallery_input

    items = packed(
        {"sensor": np.zeros((2, 8), np.float32), "image": np.ones((2, 4, 4, 3), np.uint8)}
    )
    assert gallery_input(items[1]).shape == (4, 4, 3)
    assert gallery_input(np.zeros((2, 4, 4))[0]).shape == (4, 4)
