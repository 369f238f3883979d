"""Any model, any data: MLPerf Tiny's ResNet-8 and anomaly autoencoder, a small wake-words CNN and
a 1,000-class model go through export and compare on synthetic data the test writes, as .npz and
as a folder of images; classifiers get class figures, the autoencoder the generic ones.
`make bench` (part 7) takes the real-size MLPerf Tiny models through every desktop format."""

import json

import numpy as np
import pytest

from tests import models
from toolkit.errors import ToolkitWarning
from toolkit.exporting.pipeline import selected_variants

QUICK = {"runs": 20, "max_seconds": 0.2, "batch_size": 8}
COUNT = 64  # items per split: enough for calibration, small enough to stay fast
CALIBRATION = 32  # int8 calibration and per-layer error samples: a few suffice for the checks


def _trained(build, images, labels, steps_per_epoch=3):
    import keras

    keras.utils.set_random_seed(0)
    model = build()
    # Eagerly: tracing the training step costs more than these few steps take.
    loss = "sparse_categorical_crossentropy"
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, run_eagerly=True)
    model.fit(images / 255.0, labels, batch_size=32, epochs=4, verbose=0)
    return model


def _classifier_npz(tmp_path, model_builder, shape, classes):
    x_train, y_train = models.class_images(COUNT, shape, classes, seed=1)
    x_test, y_test = models.class_images(COUNT, shape, classes, seed=2)
    model = _trained(model_builder, x_train, y_train)
    names = np.array([f"class {i}" for i in range(classes)])
    data = tmp_path / "data.npz"
    np.savez(
        data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=names
    )
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    return model_path, data, (x_test, y_test, names)


# The formats a converter rewrites, in their own runtimes: the Keras and SavedModel copies do not
# depend on the model's layers (the session's export covers them), the microcontroller and
# OpenVINO targets have their own tests, and every model in every runtime would double the time.
FORMATS = ["tflite", "onnx"]
RUNTIMES = ["litert", "onnxruntime"]


def _export_and_compare(
    tmp_path, model_path, data, formats=FORMATS, runtimes=RUNTIMES, figures=False, **export
):
    import toolkit

    out = tmp_path / "out"
    manifest = toolkit.export(
        out,
        model=model_path,
        data=data,
        formats=formats,
        calib_samples=CALIBRATION,
        figures=figures,
        **export,
    )
    assert manifest.left_out == [], manifest.left_out
    # model.keras, the reference, is listed whatever the formats
    assert len(manifest.artifacts) == len(selected_variants(sorted({"keras", *formats})))
    report = toolkit.compare(out, **QUICK, runtimes=runtimes, figures=figures)
    assert all(row.ok for row in report.rows), [(r.key, r.error) for r in report.rows if not r.ok]
    assert {row.runtime for row in report.rows} == {"keras", *runtimes}  # keras: the reference
    return out, manifest, report


def test_resnet8_from_npz(tmp_path):
    """MLPerf Tiny image classification, data as .npz with every split and class names."""
    model_path, data, (x_test, y_test, names) = _classifier_npz(
        tmp_path, models.resnet8, (32, 32, 3), 10
    )
    # A few steps leave the ten outputs nearly tied (batch norm's moving statistics have barely
    # moved), so int8's small errors flip many top-1 answers at SNRs near 40 dB: agreement would
    # start the mixed-precision search (test_mixed_precision's subject) and SNR judges int8 here.
    out, manifest, report = _export_and_compare(tmp_path, model_path, data, min_agreement=0.0)
    assert manifest.task == "classification" and manifest.class_names == list(names)
    assert manifest.data["kind"] == "npz" and manifest.data["calibration"] == "train split"
    assert manifest.preprocessing["input_shape"] == [32, 32, 3]
    assert manifest.preprocessing["layout"] == "HWC"
    assert report.reference_row.accuracy > 0.2  # a few steps learnt the synthetic classes
    for row in report.rows:
        assert row.accuracy is not None and len(row.per_class_accuracy) == 10
    # The same items as an image folder are the same data, pixel for pixel (PNG is lossless).
    from toolkit.data import load_data

    models.write_image_folder(tmp_path / "images", x_test, y_test, names, "test")
    folder = load_data(tmp_path / "images" / "test", image_shape=(32, 32, 3))
    order = np.argsort(y_test, kind="stable")  # the folder lists class by class
    assert np.array_equal(folder.test_images, x_test[order])
    assert folder.class_names == tuple(names)


def _wake_words_cnn():
    """Visual wake words' input (96x96x3) and classes (2) with MobileNet's depthwise separable
    block: what reads the image folder does not depend on the model's depth, and the real
    MobileNetV1 0.25 goes through every desktop format in `make bench`."""
    import keras
    from keras import layers

    inputs = keras.Input((96, 96, 3))
    x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(8, 3, strides=4)(inputs)))
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(layers.Conv2D(16, 1)(x)))
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x), name="wake_words")


def test_visual_wake_words_from_an_image_folder(tmp_path):
    """A visual wake words classifier (96x96x3, 2 classes) on an image folder with train/ and
    test/ splits, the images stored at another size (resized on reading)."""
    import keras

    x_train, y_train = models.class_images(COUNT, (120, 120, 3), 2, seed=1)
    x_test, y_test = models.class_images(COUNT, (120, 120, 3), 2, seed=2)
    folder = tmp_path / "photos"
    models.write_image_folder(folder, x_train, y_train, ["no person", "person"], "train")
    models.write_image_folder(folder, x_test, y_test, ["no person", "person"], "test")
    keras.utils.set_random_seed(0)
    model_path = tmp_path / "vww.keras"
    _wake_words_cnn().save(model_path)
    with pytest.warns(ToolkitWarning, match=f"{2 * COUNT} images resized to 96x96"):
        # The data path is under test here: one format in its runtime suffices.
        out, manifest, report = _export_and_compare(
            tmp_path, model_path, folder, formats=["tflite"], runtimes=["litert"]
        )
    assert manifest.data["kind"] == "images" and manifest.class_names == ["no person", "person"]
    assert manifest.data["calibration"] == "train split"
    assert report.test_images == COUNT
    assert all(row.accuracy is not None for row in report.rows)


def test_anomaly_autoencoder_gets_generic_figures(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    features = rng.normal(0, 1, (COUNT, 640)).astype(np.float32)
    model = models.anomaly_autoencoder()
    model_path = tmp_path / "model.keras"
    model.save(model_path)
    data = tmp_path / "features.npz"
    np.savez(data, x_train=features, x_test=features[::-1])
    out, manifest, report = _export_and_compare(tmp_path, model_path, data, figures=True)
    assert manifest.task == "other" and manifest.class_names == []
    assert manifest.preprocessing["scale"] == 1.0  # float data: identity by default
    for row in report.rows:
        assert row.accuracy is None and row.agreement is None
        assert row.snr_db is None or row.snr_db > 20  # None: identical to the reference
        assert row.rmse is not None and row.cosine > 0.9


def test_unlabelled_data_with_1000_classes_calibrates_on_the_evaluation_sample(tmp_path):
    """1,000 classes, no labels, no training split: agreement only, calibrated on the
    evaluation sample. A small convolutional model keeps the suite fast; `make bench` (part 7)
    takes the real-size MobileNetV2 through every desktop format on 10,000 items."""
    import keras

    keras.utils.set_random_seed(0)
    model_path = tmp_path / "model.keras"
    models.thousand_class_cnn().save(model_path)
    images, _ = models.class_images(32, (24, 24, 3), 2)
    data = tmp_path / "unlabelled.npz"
    np.savez(data, x_test=images)
    import toolkit

    out = tmp_path / "out"
    manifest = toolkit.export(
        out,
        model=model_path,
        data=data,
        formats=["tflite"],
        calib_samples=CALIBRATION,
        figures=False,
    )
    assert manifest.data["calibration"] == "evaluation sample" and not manifest.data["labelled"]
    assert manifest.task == "classification" and len(manifest.class_names) == 1000
    report = toolkit.compare(out, **QUICK, runtimes=["litert"], figures=False)
    rows = {row.artifact: row for row in report.rows}
    assert rows["model_float32.tflite"].agreement == 1.0
    assert all(row.accuracy is None for row in report.rows)


def test_train_compare_and_predict_on_your_own_data(tmp_path):
    """`train --data` builds the tutorial architecture for the data's shape and classes;
    `compare --limit` and `predict` read the data and preprocessing export recorded."""
    from typer.testing import CliRunner

    from toolkit.cli import app

    x, y = models.class_images(COUNT, (12, 12, 3), 4, seed=1)
    xt, yt = models.class_images(COUNT, (12, 12, 3), 4, seed=2)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=xt, y_test=yt)
    out, data = str(tmp_path / "out"), str(tmp_path / "d.npz")
    run = CliRunner().invoke
    np.savez(
        tmp_path / "small.npz", x_train=x[:, :8, :8], y_train=y, x_test=xt[:, :8, :8], y_test=yt
    )
    small = run(
        app, ["train", "--out", out, "--data", str(tmp_path / "small.npz"), "--arch", "cnn"]
    )
    assert small.exit_code == 2 and "--arch cnn needs items of at least 10x10" in small.output
    train = ["train", "--out", out, "--data", data, "--epochs", "1", "--arch", "cnn"]
    trained = run(app, [*train, "--no-figures"])
    assert trained.exit_code == 0, trained.output
    import keras

    model = keras.saving.load_model(tmp_path / "out" / "model.keras")
    assert tuple(model.inputs[0].shape) == (None, 12, 12, 3) and model.outputs[0].shape[-1] == 4
    # One epoch on 64 items leaves near-ties int8 flips: SNR judges int8 (see resnet8 above).
    export = ["export", "--out", out, "--data", data, "--format", "tflite", "--min-agreement", "0"]
    export += ["--no-figures"]
    exported = run(app, export)
    assert exported.exit_code == 0, exported.output
    compared = run(
        app,
        ["compare", "--out", out, "--limit", "10", "--runtime", "litert", "--runs", "20"]
        + ["--no-figures"],
    )
    assert compared.exit_code == 0, compared.output
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text())
    assert report["test_images"] == 10 and report["class_names"] == ["0", "1", "2", "3"]
    np.save(tmp_path / "item.npy", xt[3])
    plot = tmp_path / "p.png"
    predicted = run(
        app,
        ["predict", str(tmp_path / "item.npy"), "--out", out, "--index", "3", "--plot", str(plot)],
    )
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.output.strip().splitlines()
    assert lines[0].split(":")[1].split()[0] == lines[1].split(":")[1].split()[0]  # same item
    assert f"(true: {yt[3]})" in lines[1] and plot.read_bytes()[:4] == b"\x89PNG"
