"""TensorFlow Lite Micro runner: same outputs as LiteRT, clean refusals, a measured arena."""

import numpy as np
import pytest

from tests.runners.contract import predict_with as _predict
from toolkit.arrays import only
from toolkit.runners import RUNNERS
from toolkit.runners.base import Unsupported


def test_float32_matches_litert(tiny_model_dir, images):
    path = tiny_model_dir / "model_float32.tflite"
    micro = _predict("tflite-micro", path, images)
    # TFLM's reference kernels and XNNPACK sum in different orders: float32 rounding, ~1e-7.
    np.testing.assert_allclose(micro, _predict("litert", path, images), atol=1e-5)
    assert micro.shape == (40, 10) and micro.dtype == np.float32


def test_int8_meets_the_variants_tolerance(tiny):
    """Held to what export promises for the file (its variant's tolerance against the Keras
    reference), not to LiteRT's bits: integer kernels may round a requantization differently
    (XNNPACK's by CPU, TFLM's reference kernels portably)."""
    from tests.conftest import tiny_artifact
    from toolkit.exporters import EXPORTERS
    from toolkit.metrics import compare_outputs

    variant = next(v for v in EXPORTERS["tflite"] if v.variant == "int8")
    with RUNNERS["tflite-micro"](tiny_artifact(tiny, variant)) as runner:
        micro = only(runner.predict(tiny.inputs))
    assert micro.shape == tiny.reference.shape and micro.dtype == np.float32
    assert variant.tolerance.failures(compare_outputs(micro, tiny.reference)) == []


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_bound_call_gives_the_predicted_output(tiny_model_dir, images, variant):
    with RUNNERS["tflite-micro"](tiny_model_dir / f"model_{variant}.tflite") as runner:
        expected = only(runner.predict(images[:1]))
        call = runner.bind(images[:1])
        call()
        raw = runner.interpreter.get_output(0)
        affine = runner.io_details()[1][0].get("quantization")
        if affine:
            raw = (raw.astype(np.float32) - affine["zero_point"]) * affine["scale"]
        np.testing.assert_array_equal(raw, expected)
        batch_call = runner.bind(images[:3])  # a batch is one invoke per image
        batch_call()
        inputs, outputs = runner.io_details()
        assert inputs[0]["name"] == "images" and outputs[0]["name"] == "probabilities"
        assert inputs[0]["shape"] == [1, 28, 28]


@pytest.mark.parametrize(
    ("variant", "reason"),
    [("float16", "float16 weights"), ("dynamic_int8", "dynamic-range int8")],
)
def test_files_tflm_cannot_run_are_unsupported(tiny_model_dir, variant, reason):
    with pytest.raises(Unsupported, match=reason):
        RUNNERS["tflite-micro"](tiny_model_dir / f"model_{variant}.tflite")


def test_missing_ops_are_unsupported(uncommon_ops_tflite):
    with pytest.raises(
        Unsupported, match="missing from TFLM.s op resolver: FlexCos, FlexIdentity, FlexTopKV2"
    ):
        RUNNERS["tflite-micro"](uncommon_ops_tflite)


@pytest.mark.parametrize("variant", ["float32", "int8"])
def test_measured_arena_runs_and_one_alignment_unit_less_fails(tiny_model_dir, variant):
    from toolkit.formats.tflite_micro import measure_arena_bytes, try_arena

    path = tiny_model_dir / f"model_{variant}.tflite"
    arena_bytes = measure_arena_bytes(path)
    assert arena_bytes % 8 == 0 and 1000 < arena_bytes < 100_000
    assert try_arena(path, arena_bytes)[0]
    ran, stderr = try_arena(path, arena_bytes - 16)
    assert not ran and "Arena allocation total" not in stderr


def test_extras_report_arena_and_flash_bytes(tiny_model_dir):
    from toolkit.formats.tflite_micro import measure_arena_bytes

    path = tiny_model_dir / "model_int8.tflite"
    with RUNNERS["tflite-micro"](path) as runner:
        extras = runner.extras()
    assert extras == {
        "arena_bytes": measure_arena_bytes(path),
        "flash_bytes": path.stat().st_size,
        "batching": "one call per item",
    }


def test_a_file_that_is_not_a_model_is_an_artifact_error(tmp_path):
    from toolkit.errors import ExitCode, ToolkitError

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(ToolkitError, match="broken.tflite: not a valid TFLite model") as caught:
        RUNNERS["tflite-micro"](broken)
    assert not isinstance(caught.value, Unsupported) and caught.value.code == ExitCode.ARTIFACT


def test_a_kernel_that_refuses_its_types_is_unsupported_with_tflm_message(tmp_path):
    """CUMSUM is in TFLM's resolver but has no int64 kernel: caught at prepare, not a crash."""
    from toolkit.process import import_tensorflow

    tf = import_tensorflow()

    @tf.function(input_signature=[tf.TensorSpec((1, 8), tf.float32)])
    def serve(x):
        return tf.math.cumsum(tf.cast(x, tf.int64), axis=1)

    path = tmp_path / "int64_cumsum.tflite"
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], serve
    )
    path.write_bytes(converter.convert())
    with pytest.raises(Unsupported, match="cannot prepare it: Node CUMSUM .* failed to prepare"):
        RUNNERS["tflite-micro"](path)
