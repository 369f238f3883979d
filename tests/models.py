"""Edge models written in Keras for the tests: the MLPerf Tiny reference models and a real-size
MobileNetV2, plus synthetic data they can learn in a few steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def resnet8(classes: int = 10):
    """MLPerf Tiny image classification: ResNet-8 on 32x32x3 (about 78k parameters)."""
    import keras
    from keras import layers

    def block(x, filters, stride):
        y = layers.Conv2D(filters, 3, strides=stride, padding="same")(x)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.BatchNormalization()(layers.Conv2D(filters, 3, padding="same")(y))
        if stride != 1:
            x = layers.Conv2D(filters, 1, strides=stride)(x)
        return layers.Activation("relu")(layers.Add()([x, y]))

    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same")(inputs)
    x = layers.Activation("relu")(layers.BatchNormalization()(x))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        x = block(x, filters, stride)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x), name="resnet8")


def vww_mobilenet_v1():
    """MLPerf Tiny visual wake words: MobileNetV1 alpha 0.25 on 96x96x3, 2 classes."""
    import keras

    return keras.applications.MobileNet(
        input_shape=(96, 96, 3), alpha=0.25, weights=None, classes=2
    )


def anomaly_autoencoder():
    """MLPerf Tiny anomaly detection: the fully connected autoencoder, 640 -> 8 -> 640."""
    import keras
    from keras import layers

    inputs = keras.Input((640,))
    x = inputs
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = layers.Activation("relu")(layers.BatchNormalization()(layers.Dense(units)(x)))
    return keras.Model(inputs, layers.Dense(640)(x), name="anomaly_autoencoder")


def mobilenet_v2():
    """A real-size model: MobileNetV2 alpha 0.35 on 96x96x3, 1,000 classes."""
    import keras

    return keras.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)


def thousand_class_cnn():
    """ImageNet's 1,000 softmax outputs behind a small convolutional body, for the tests; the
    real-size MobileNetV2 above is `make bench`'s."""
    import keras
    from keras import layers

    inputs = keras.Input((24, 24, 3))
    x = layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    # Wide logits give peaked scores, as a trained model has: an untrained 1,000-way softmax
    # outputs about 1/1,000 everywhere, below one int8 output step.
    wide = keras.initializers.RandomNormal(stddev=3.0, seed=0)
    scores = layers.Dense(1000, activation="softmax", kernel_initializer=wide)(x)
    return keras.Model(inputs, scores, name="thousand")


def class_images(count: int, shape: tuple[int, ...], classes: int, seed: int = 0):
    """uint8 images whose class is their dominant colour band: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, count)
    images = rng.integers(0, 60, (count, *shape)).astype(np.int16)
    band = shape[0] // classes
    for i, label in enumerate(labels):
        images[i, label * band : (label + 1) * band] += 180
    return images.clip(0, 255).astype(np.uint8), labels.astype(np.int64)


def export_tiny_classifier(folder: Path, shape=(12, 12), count: int = 64, seed: int = 1) -> Path:
    """A tiny seeded classifier on `class_images`, exported as .keras, .tflite and .onnx into
    folder/out (returned): the artifacts the device and cluster tests measure."""
    import keras

    import toolkit

    x, y = class_images(count, shape, 4, seed=seed)
    names = np.array([f"class {i}" for i in range(4)])
    np.savez(folder / "data.npz", x_train=x, y_train=y, x_test=x, y_test=y, class_names=names)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape)
    hidden = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(hidden))
    model.save(folder / "model.keras")
    toolkit.export(
        folder / "out",
        model=folder / "model.keras",
        data=folder / "data.npz",
        formats=["keras", "tflite", "onnx"],
        calib_samples=32,
        figures=False,
    )
    return folder / "out"


def write_image_folder(folder: Path, images: np.ndarray, labels: np.ndarray, names, split: str):
    """The keras image_dataset_from_directory layout: folder/split/<class>/<i>.png."""
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        target = folder / split / names[label]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.squeeze()).save(target / f"{i:05d}.png")  # sorted = index order
