"""Shared fixtures: the real dataset and a tiny model trained once per test session."""

from pathlib import Path

import pytest

from toolkit import import_tensorflow

TINY = {"limit": 2000, "epochs": 2}


@pytest.fixture(scope="session")
def dataset():
    from toolkit.data import load_dataset

    return load_dataset()


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, dataset) -> Path:
    """An output folder holding a tiny trained tutorial model and its training outputs."""
    from toolkit.model import TrainConfig, save_training_outputs, train

    import_tensorflow()
    out = tmp_path_factory.mktemp("trained")
    result = train(dataset, TrainConfig(**TINY), out / "training" / "checkpoint")
    save_training_outputs(out, dataset, result)
    return out


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory, trained_dir) -> Path:
    """The tiny model exported to every registered format, with its manifest."""
    import shutil

    from toolkit.export import export_artifacts

    out = tmp_path_factory.mktemp("exported") / "out"
    shutil.copytree(trained_dir, out)
    export_artifacts(out)
    return out


@pytest.fixture
def exported_copy(exported_dir, tmp_path) -> Path:
    """A private copy of the exported folder, for tests that change or break files in it."""
    import shutil

    return Path(shutil.copytree(exported_dir, tmp_path / "exported_copy"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained Flatten -> Dense(16) -> Dense(10) model as every TFLite variant and as ONNX
    float32: files for runtime tests that compare runtimes with each other, not accuracy."""
    import numpy as np

    from toolkit.exporters import EXPORTERS, ExportContext

    keras = import_tensorflow().keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    out = tmp_path_factory.mktemp("tiny_model")
    calibration = np.random.default_rng(0).random((32, 28, 28), dtype=np.float32)
    context = ExportContext(calibration, out / "model.keras", opset=17)
    onnx_float32 = [v for v in EXPORTERS["onnx"] if v.variant == "float32"]
    for variant in [*EXPORTERS["tflite"], *onnx_float32]:
        variant.write(model, out / variant.filename, context)
    return out


@pytest.fixture(scope="session")
def uncommon_ops_tflite(tmp_path_factory) -> Path:
    """A .tflite file made of Flex (select TensorFlow) ops, which TFLite Micro, the GPU delegate
    and OpenVINO's TFLite reader all lack."""
    tf = import_tensorflow()

    @tf.function(input_signature=[tf.TensorSpec((1, 8), tf.float32)])
    def serve(x):
        return tf.math.top_k(tf.math.cos(x), k=2).values

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], serve
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path_factory.mktemp("uncommon_ops") / "uncommon_ops.tflite"
    path.write_bytes(converter.convert())
    return path
