"""OpenVINO runner: ONNX and TFLite files read directly, in f32 on the requested threads."""

import numpy as np
import pytest

from tests.runners.contract import predict_with as _predict
from toolkit.runners import RUNNERS
from toolkit.runners.base import Unsupported


@pytest.mark.parametrize(
    ("filename", "native"),
    [("model_float32.onnx", "onnxruntime"), ("model_float32.tflite", "litert")],
)
def test_float_files_match_their_native_runtime(tiny_model_dir, images, filename, native):
    path = tiny_model_dir / filename
    openvino = _predict("openvino", path, images)
    # f32 forced: only summation order differs (oneDNN vs MLAS/XNNPACK), ~1e-7. Left to pick
    # bf16 on this CPU, OpenVINO would be off by ~1e-2 and this would fail.
    np.testing.assert_allclose(openvino, _predict(native, path, images), atol=1e-5)
    assert openvino.shape == (40, 10) and openvino.dtype == np.float32


def test_int8_tflite_matches_litert_within_one_output_step(tiny_model_dir, images):
    path = tiny_model_dir / "model_int8.tflite"
    with RUNNERS["openvino"](path) as runner:
        openvino = runner.predict(images)
        inputs, outputs = runner.io_details()
    assert inputs[0]["dtype"] == "int8" and outputs[0]["dtype"] == "int8"
    assert inputs[0]["name"] == "images" and outputs[0]["name"] == "probabilities"
    step = outputs[0]["quantization"]["scale"]
    # Integer kernels may round a requantization differently from XNNPACK's: one output step.
    np.testing.assert_allclose(openvino, _predict("litert", path, images), atol=step * 1.01)


@pytest.mark.parametrize("filename", ["model_float32.onnx", "model_int8.tflite"])
def test_bound_call_gives_the_predicted_output(tiny_model_dir, images, filename):
    with RUNNERS["openvino"](tiny_model_dir / filename) as runner:
        expected = runner.predict(images[:1])
        raw = runner.bind(images[:1])().to_tuple()[0]
        affine = runner.io_details()[1][0].get("quantization")
        if affine:
            raw = (raw.astype(np.float32) - affine["zero_point"]) * affine["scale"]
        np.testing.assert_array_equal(raw, expected)
        runner.bind(images[:5])()
        np.testing.assert_allclose(runner.bound_outputs(), runner.predict(images[:5]), atol=1e-6)


def test_settings_read_back_from_the_compiled_model(tiny_model_dir):
    with RUNNERS["openvino"](tiny_model_dir / "model_float32.onnx", threads=2) as runner:
        settings = runner.extras()["openvino_settings"]
        inputs, outputs = runner.io_details()
    assert settings["INFERENCE_PRECISION_HINT"] == "f32"
    assert settings["INFERENCE_NUM_THREADS"] == 2
    assert settings["PERFORMANCE_HINT"] == "LATENCY"
    assert settings["ENABLE_CPU_PINNING"] is False
    assert inputs[0] == {"name": "images", "shape": [None, 28, 28], "dtype": "float32"}
    assert outputs[0]["name"] == "probabilities"


def test_flex_ops_are_unsupported(uncommon_ops_tflite):
    with pytest.raises(Unsupported, match="OpenVINO cannot convert it: .*Flex"):
        RUNNERS["openvino"](uncommon_ops_tflite)


def test_unreadable_file_is_an_artifact_error_not_unsupported(tmp_path):
    from toolkit.errors import ExitCode, ToolkitError

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model" * 10)
    with pytest.raises(ToolkitError, match="broken.tflite: OpenVINO cannot read it") as caught:
        RUNNERS["openvino"](broken)
    assert not isinstance(caught.value, Unsupported)
    assert caught.value.code == ExitCode.ARTIFACT
