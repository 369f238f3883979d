"""The models toolkit trains: the tutorial's MLP and a small CNN, compiled the tutorial's way."""

from __future__ import annotations

from toolkit.data import IMAGE_SIDE, NUM_CLASSES
from toolkit.errors import ExitCode, ToolkitError
from toolkit.formats.keras import INPUT_NAME, OUTPUT_NAME

TUTORIAL_SHAPE = (IMAGE_SIDE, IMAGE_SIDE)


CNN_MIN_SIDE = 10  # 10 -> conv 8 -> pool 4 -> conv 2 -> pool 1


def build_mlp(input_shape: tuple = TUTORIAL_SHAPE, classes: int = NUM_CLASSES):
    """The tutorial model: Flatten -> Dense(128, relu) -> Dense(classes, softmax)."""
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=input_shape, name=INPUT_NAME),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(classes, activation="softmax", name=OUTPUT_NAME),
        ],
        name="mlp",
    )


def build_cnn(input_shape: tuple = TUTORIAL_SHAPE, classes: int = NUM_CLASSES):
    """An edge-sized conv net (about 57k parameters on 28x28) so export and compare see
    convolutions; (H, W) inputs get a channel axis."""
    import keras

    if len(input_shape) not in (2, 3):
        raise ToolkitError(
            f"--arch cnn needs image-like items (H, W) or (H, W, C), found {input_shape}; "
            "use --arch mlp",
            ExitCode.USAGE,
        )
    if min(input_shape[:2]) < CNN_MIN_SIDE:
        raise ToolkitError(
            f"--arch cnn needs items of at least {CNN_MIN_SIDE}x{CNN_MIN_SIDE} (two 3x3 "
            f"convolutions and poolings), found {input_shape}; use --arch mlp",
            ExitCode.USAGE,
        )
    image_shape = input_shape if len(input_shape) == 3 else (*input_shape, 1)
    return keras.Sequential(
        [
            keras.Input(shape=input_shape, name=INPUT_NAME),
            keras.layers.Reshape(image_shape),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(classes, activation="softmax", name=OUTPUT_NAME),
        ],
        name="cnn",
    )


ARCHITECTURES = {"mlp": build_mlp, "cnn": build_cnn}


def compile_model(model) -> None:
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
