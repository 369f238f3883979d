"""The contract every registered runner keeps, on the tiny exported model."""

import numpy as np
import pytest

from toolkit.data import normalize
from toolkit.runners import RUNNERS, missing_runtime
from toolkit.runners.base import dequantize, quantize

# The artifact each runtime is tested on: a runtime registered without one fails below.
RUNNER_ARTIFACTS = {
    "keras": "model.keras",
    "tensorflow": "savedmodel",
    "litert": "model_int8.tflite",  # integer input and output: quantization handled inside
    "onnxruntime": "model_float32.onnx",
    "tflite-micro": "model_int8.tflite",
    "openvino": "model_int8.tflite",  # a TFLite file, integer I/O: the quantization read from it
}


def test_every_registered_runner_has_a_test():
    assert set(RUNNER_ARTIFACTS) == set(RUNNERS)


@pytest.fixture(scope="module")
def images(dataset):
    return normalize(dataset.test_images[:300])


@pytest.fixture(scope="module")
def reference(exported_dir, images):
    with RUNNERS["keras"](exported_dir / "model.keras") as runner:
        return runner.predict(images)


@pytest.mark.parametrize("runtime", sorted(RUNNERS))
def test_runner_contract(runtime, exported_dir, images, reference):
    with RUNNERS[runtime](exported_dir / RUNNER_ARTIFACTS[runtime], threads=1) as runner:
        probabilities = runner.predict(images)
        assert probabilities.shape == (len(images), 10)
        assert probabilities.dtype == np.float32
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)
        assert np.mean(probabilities.argmax(1) == reference.argmax(1)) >= 0.97
        call = runner.bind(images[:1])
        call()  # the bare runtime call runs on the bound input
        inputs, outputs = runner.io_details()
        assert inputs[0]["name"] == "images" and outputs[0]["name"] == "probabilities"
        # Batch sizes that do not divide the internal chunking still give one row per image.
        assert runner.predict(images[:257]).shape == (257, 10)


def test_quantize_round_trip_saturates():
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    q = quantize(values, 1 / 255, -128, np.int8)
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
    np.testing.assert_allclose(dequantize(q, 1 / 255, -128)[1:4], [0.0, 0.5, 1.0], atol=1 / 255)


@pytest.mark.parametrize("runtime", ["tflite-micro", "openvino"])
def test_a_missing_runtime_package_is_one_install_line(monkeypatch, runtime):
    import importlib.util

    module = RUNNERS[runtime].module
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == module else real_find_spec(name, *a),
    )
    package = RUNNERS[runtime].package
    assert missing_runtime(runtime) == (
        f"{runtime}: skipped, its package is not installed (pip install {package})"
    )
    assert missing_runtime("litert") is None


def test_importing_the_registry_loads_no_optional_runtime():
    """So that a runtime whose package is missing cannot break `import toolkit.runners`."""
    import subprocess
    import sys

    optional = "{'openvino', 'tflite_micro'}"
    code = f"import sys, toolkit.runners; print(sorted({optional} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
