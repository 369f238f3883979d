"""OpenVINO runner: ONNX and TFLite files read directly, in f32 on the requested threads."""

import numpy as np
import pytest

from tests.runners.contract import predict_with as _predict
from toolkit.arrays import only
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


def test_int8_tflite_meets_the_variants_tolerance(tiny, tmp_path):
    """Held to what export promises for the file (its variant's tolerance against the Keras
    reference), not to LiteRT's bits: integer kernels differ by CPU (VNNI or not)."""
    from toolkit.exporters import EXPORTERS
    from toolkit.exporters.base import ExportContext
    from toolkit.metrics import compare_outputs

    variant = next(v for v in EXPORTERS["tflite"] if v.variant == "int8")
    # Dynamic batch: OpenVINO 2026.4 on one thread returns saturated outputs for the static
    # batch-1 int8 file (README, static graphs); compare marks such rows outside tolerance.
    context = ExportContext(
        tiny.model, tiny.context.source, tiny.context.calibration, 17, tmp_path, batch=None
    )
    path = tmp_path / variant.filename
    variant.write(tiny.model, path, context)
    with RUNNERS["openvino"](path) as runner:
        openvino = only(runner.predict(tiny.inputs))
        inputs, outputs = runner.io_details()
    assert inputs[0]["dtype"] == "int8" and outputs[0]["dtype"] == "int8"
    assert inputs[0]["name"] == "images" and outputs[0]["name"] == "probabilities"
    assert variant.tolerance.failures(compare_outputs(openvino, tiny.reference)) == []


@pytest.mark.parametrize("filename", ["model_float32.onnx", "model_int8.tflite"])
def test_bound_call_gives_the_predicted_output(tiny_model_dir, images, filename):
    with RUNNERS["openvino"](tiny_model_dir / filename) as runner:
        expected = only(runner.predict(images[:1]))
        raw = runner.bind(images[:1])().to_tuple()[0]
        affine = runner.io_details()[1][0].get("quantization")
        if affine:
            raw = (raw.astype(np.float32) - affine["zero_point"]) * affine["scale"]
        np.testing.assert_array_equal(raw, expected)
        runner.bind(images[:5])()
        bound, predicted = runner.bound_outputs(), runner.predict(images[:5])
        np.testing.assert_allclose(only(bound), only(predicted), atol=1e-6)


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
