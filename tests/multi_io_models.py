"""Models with several inputs or outputs for the tests and the bench (issue 25), each with
synthetic data it learns a little of in a few steps, written in the .npz layout by name; and
the export-compare-check every test of them shares."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SENSOR = 8  # values of the sensor vector of the models with two inputs


def _images(rng, count: int, shape: tuple, classes: int):
    """uint8 images whose class is their bright band of rows: learnable in a few steps."""
    labels = rng.integers(0, classes, count)
    images = rng.integers(0, 60, (count, *shape)).astype(np.int16)
    band = max(1, shape[0] // classes)
    for i, label in enumerate(labels):
        images[i, label * band : (label + 1) * band] += 180
    return images.clip(0, 255).astype(np.uint8), labels


def ssd_lite(backbone: str = "tiny", classes: int = 3, side: int = 96):
    """An SSD-lite-style detector: a backbone, then per-anchor box offsets (N, A, 4) and class
    scores (N, A, C) from depthwise-separable heads. `backbone`: "mobilenet_v2" (alpha 0.35,
    weights=None) or "tiny" (two strided convolutions, for the quick tests)."""
    import keras
    from keras import layers

    image = keras.Input((side, side, 3), name="image")
    if backbone == "mobilenet_v2":
        base = keras.applications.MobileNetV2(
            input_tensor=image, alpha=0.35, include_top=False, weights=None
        )
        features = base.output
    else:
        x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(image)
        features = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    anchors = 2

    def head(channels: int, name: str):
        y = layers.SeparableConv2D(anchors * channels, 3, padding="same")(features)
        return layers.Reshape((-1, channels), name=name)(y)

    boxes = head(4, "boxes")
    scores = layers.Softmax(name="scores")(head(classes, "class_logits"))
    return keras.Model(image, [boxes, scores], name="ssd_lite")


def detector_data(count: int, side: int, classes: int, anchors: int, seed: int):
    rng = np.random.default_rng(seed)
    images, labels = _images(rng, count, (side, side, 3), classes)
    boxes = rng.random((count, anchors, 4), dtype=np.float32)
    scores = np.eye(classes, dtype=np.float32)[labels][:, None, :].repeat(anchors, axis=1)
    return images, boxes, scores


def two_input(classes: int = 3, side: int = 16):
    """An image and an 8-value sensor vector, one softmax head; its outputs are given as a
    dict so Keras orders them by name, which TFLite does not follow."""
    import keras
    from keras import layers

    image = keras.Input((side, side, 3), name="image")
    sensor = keras.Input((SENSOR,), name="sensor")
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(image)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Concatenate()([x, layers.Dense(8, activation="relu")(sensor)])
    label = layers.Dense(classes, activation="softmax", name="label")(x)
    return keras.Model({"image": image, "sensor": sensor}, label, name="two_input")


def multi_task(side: int = 16):
    """An image and a sensor vector in, two softmax heads with their own labels (4 shapes,
    2 colours) out; outputs given in the order (shape, colour) while Keras lists them by
    name. Several inputs and several outputs at once: the model every format and runtime
    takes (the others' subjects need fewer)."""
    import keras
    from keras import layers

    image = keras.Input((side, side, 3), name="image")
    sensor = keras.Input((SENSOR,), name="sensor")
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(image)
    x = layers.GlobalAveragePooling2D()(layers.Conv2D(16, 3, strides=2, activation="relu")(x))
    x = layers.Concatenate()([x, layers.Dense(8, activation="relu")(sensor)])
    shape = layers.Dense(4, activation="softmax", name="shape")(x)
    colour = layers.Dense(2, activation="softmax", name="colour")(x)
    inputs = {"image": image, "sensor": sensor}
    return keras.Model(inputs, {"shape": shape, "colour": colour}, name="multi_task")


def single_head(activation: str, side: int = 12):
    """One (N, 1) output: a binary classifier (sigmoid) or a regression (linear)."""
    import keras
    from keras import layers

    image = keras.Input((side, side, 1), name="image")
    x = layers.Dense(8, activation="relu")(layers.Flatten()(image))
    return keras.Model(image, layers.Dense(1, activation=activation)(x), name=activation)


def fit(model, x, y, loss, steps: int = 4) -> None:
    import keras

    keras.utils.set_random_seed(0)
    # Eagerly: tracing the training step costs more than these few steps take.
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, run_eagerly=True)
    model.fit(x, y, batch_size=32, epochs=steps, verbose=0)


def write(folder: Path, name: str, model, arrays: dict) -> tuple[Path, Path]:
    """The model and its .npz (arrays by their layout names) in `folder`."""
    model_path, data_path = folder / f"{name}.keras", folder / f"{name}.npz"
    model.save(model_path)
    np.savez(data_path, **arrays)
    return model_path, data_path


def build_two_input(folder: Path, count: int = 64) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    splits = {}
    for split in ("train", "test"):
        images, labels = _images(rng, count, (16, 16, 3), 3)
        splits[split] = (images, rng.random((count, SENSOR), dtype=np.float32), labels)
    import keras

    keras.utils.set_random_seed(0)  # the same initial weights every run
    model = two_input()
    images, sensor, labels = splits["train"]
    inputs = {"image": images / 255.0, "sensor": sensor}
    # trained past near-tied outputs, which int8 rounding flips past the agreement tolerance
    fit(model, inputs, labels, "sparse_categorical_crossentropy", steps=40)
    arrays = {}
    for split, (images, sensor, labels) in splits.items():
        arrays |= {f"x_{split}/image": images, f"x_{split}/sensor": sensor, f"y_{split}": labels}
    arrays["class_names"] = np.array(["low", "middle", "high"])
    return write(folder, "two_input", model, arrays)


def build_multi_task(folder: Path, count: int = 64) -> tuple[Path, Path]:
    rng = np.random.default_rng(2)
    arrays = {}
    for split in ("train", "test"):
        images, shape = _images(rng, count, (16, 16, 3), 4)
        colour = rng.integers(0, 2, count)
        images[colour == 1, :, :, 2] = 255  # a blue channel for colour 1
        sensor = rng.random((count, SENSOR), dtype=np.float32)
        arrays |= {f"x_{split}/image": images, f"x_{split}/sensor": sensor}
        arrays |= {f"y_{split}/shape": shape, f"y_{split}/colour": colour}
    model = multi_task()
    targets = {"shape": arrays["y_train/shape"], "colour": arrays["y_train/colour"]}
    inputs = {"image": arrays["x_train/image"] / 255.0, "sensor": arrays["x_train/sensor"]}
    fit(model, inputs, targets, "sparse_categorical_crossentropy")
    arrays["class_names/colour"] = np.array(["red", "blue"])
    return write(folder, "multi_task", model, arrays)


def build_single_head(folder: Path, activation: str, count: int = 64) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    arrays = {}
    for split in ("train", "test"):
        images, labels = _images(rng, count, (12, 12, 1), 2)
        arrays[f"x_{split}"] = images
        if activation == "sigmoid":
            arrays[f"y_{split}"] = labels
    model = single_head(activation)
    if activation == "sigmoid":
        fit(model, arrays["x_train"] / 255.0, arrays["y_train"], "binary_crossentropy")
        arrays["class_names"] = np.array(["dark", "bright"])
    else:  # a regression of the images' mean brightness
        target = arrays["x_train"].mean(axis=(1, 2, 3)) / 255.0
        fit(model, arrays["x_train"] / 255.0, target, "mse")
    name = "binary" if activation == "sigmoid" else "regression"
    return write(folder, name, model, arrays)


def build_detector(folder: Path, backbone: str, side: int, count: int = 32):
    model = ssd_lite(backbone, side=side)
    anchors, classes = model.outputs[0].shape[1], model.outputs[1].shape[2]
    arrays = {}
    for split, seed in (("train", 4), ("test", 5)):
        images, _, _ = detector_data(count, side, classes, anchors, seed)
        arrays[f"x_{split}"] = images
    images, boxes, scores = detector_data(count, side, classes, anchors, 4)
    fit(model, images / 255.0, [boxes, scores], ["mse", "categorical_crossentropy"], steps=2)
    return write(folder, f"detector_{backbone}", model, arrays)


QUICK = {"runs": 5, "max_seconds": 0.05, "batch_size": 4}
CALIBRATION = 32  # int8 calibration samples: a few suffice for the checks
RUNTIMES = {"keras", "tensorflow", "litert", "onnxruntime", "tflite-micro", "openvino"}


def export_and_compare(
    tmp_path_factory, build, name, formats=("all",), runtimes=None, figures=False
):
    """The model `build` writes, exported to `formats` and compared in `runtimes` (every
    installed one by default); export's and the report's figures only when asked (test_report
    draws them)."""
    import toolkit

    folder = tmp_path_factory.mktemp(name)
    model_path, data_path = build(folder)
    out = folder / "out"
    manifest = toolkit.export(
        out,
        model=model_path,
        data=data_path,
        calib_samples=CALIBRATION,
        formats=list(formats),
        figures=figures,
    )
    report = toolkit.compare(out, **QUICK, runtimes=runtimes, figures=figures)
    return manifest, report, out


# The judging of one head's kind is the host's work: a TFLite family in LiteRT proves it, and
# the multi-output models prove every format and runtime.
JUDGING_ONLY = {"formats": ("keras", "tflite"), "runtimes": ["keras", "litert"]}
DESKTOP = {"formats": ("keras", "tflite", "onnx"), "runtimes": ["keras", "litert", "onnxruntime"]}


def check_every_variant_and_runtime(manifest, report):
    """Every default variant exported (int8 full or mixed), every runtime measured each row's
    outputs; left-out variants are only what a converter cannot build."""
    names = {a.name for a in manifest.artifacts}
    assert manifest.left_out == [], manifest.left_out
    for int8 in ("int8.tflite", "int8.onnx"):
        assert {f"model_{int8}", f"model_mixed_{int8}"} & names
    assert {row.runtime for row in report.rows if row.ok} >= RUNTIMES
    check_judged_rows(manifest, report)


def check_judged_rows(manifest, report):
    """No row failed, and each file is held to its tolerance in the runtime that validated it;
    other runtimes may round int8 otherwise (CPU and kernels differ), which the row's
    within_tolerance reports."""
    failed = [(row.key, row.error) for row in report.rows if row.status == "failed"]
    assert failed == []
    assert any(row.ok and row.runtime == "litert" for row in report.rows)
    for row in report.rows:
        artifact = manifest.artifact(row.artifact)
        if row.ok and row.runtime == artifact.runtime and row.artifact != report.reference:
            assert row.within_tolerance, (row.key, row.tolerance_misses)
