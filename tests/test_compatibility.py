"""Where a .tflite file can run: the GPU delegate's verdict and TFLite Micro's missing ops."""

import pytest

from toolkit.formats.tflite import gpu_delegate_compatibility, tflm_compatibility


@pytest.fixture(scope="module")
def fixed_shape_float_tflite(tmp_path_factory):
    """Ops the GPU delegate takes, on float32 tensors of a fixed shape."""
    from toolkit.process import import_tensorflow

    tf = import_tensorflow()

    @tf.function(input_signature=[tf.TensorSpec((1, 8, 8, 3), tf.float32)])
    def serve(x):
        return tf.nn.relu(x) * 2.0 + 1.0

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], serve
    )
    path = tmp_path_factory.mktemp("fixed_shape") / "fixed_shape.tflite"
    path.write_bytes(converter.convert())
    return path


def test_gpu_delegate_takes_a_graph_of_supported_ops(fixed_shape_float_tflite):
    assert gpu_delegate_compatibility(fixed_shape_float_tflite) == {
        "whole_graph": True,
        "unsupported_ops": [],
        "nodes": [],
    }


def test_gpu_delegate_names_the_ops_it_cannot_take(uncommon_ops_tflite):
    verdict = gpu_delegate_compatibility(uncommon_ops_tflite)
    assert verdict["whole_graph"] is False
    assert "FlexTopKV2" in verdict["unsupported_ops"] and "FlexCos" in verdict["unsupported_ops"]
    assert all(n["reason"] for n in verdict["nodes"])


def test_dynamic_batch_flatten_leaves_shape_ops_on_the_cpu(tiny_model_dir, tmp_path):
    """Keras's Flatten with a dynamic batch computes the shape at run time (int32 SHAPE,
    STRIDED_SLICE, PACK): the GPU delegate takes the dense layers, not the whole graph."""
    import numpy as np

    from toolkit.exporters import EXPORTERS, ExportContext
    from toolkit.process import import_tensorflow

    # TFLite files have a static batch of 1 by default: this one keeps its batch dynamic.
    model = import_tensorflow().keras.models.load_model(tiny_model_dir / "model.keras")
    calibration = np.zeros((4, 28, 28), np.float32)
    context = ExportContext(
        model, tiny_model_dir / "model.keras", calibration, 17, tmp_path / ".build", batch=None
    )
    variant = next(v for v in EXPORTERS["tflite"] if v.variant == "float32")
    path = tmp_path / variant.filename
    variant.write(model, path, context)
    verdict = gpu_delegate_compatibility(path)
    assert not verdict["whole_graph"]
    assert "SHAPE" in verdict["unsupported_ops"]
    assert "FULLY_CONNECTED" not in verdict["unsupported_ops"]


def test_analyzer_warnings_are_attributed_to_their_node(monkeypatch, fixed_shape_float_tflite):
    """The analyzer's own per-node warnings (printed by TF versions whose check is built in)."""
    from toolkit.process import import_tensorflow

    tf = import_tensorflow()
    report = (
        "Subgraph#0 main(T#0) -> [T#3]\n"
        "  Op#0 RELU(T#0) -> [T#1]\n"
        "GPU COMPATIBILITY WARNING: Not supported op RELU\n"
        "  Op#1 MUL(T#1, T#2) -> [T#3]\n"
        "\nGPU COMPATIBILITY WARNING: Subgraph#0 has GPU delegate compatibility issues at nodes 0\n"
        "Subgraph#1 body(T#0) -> [T#1]\n"
        "  Op#0 CUSTOM_IN_BODY(T#0) -> [T#1]\n"
        "GPU COMPATIBILITY WARNING: Not supported op CUSTOM_IN_BODY\n"
    )
    monkeypatch.setattr(tf.lite.experimental.Analyzer, "analyze", lambda **kw: print(report))
    verdict = gpu_delegate_compatibility(fixed_shape_float_tflite)
    assert verdict["nodes"] == [{"node": 0, "op": "RELU", "reason": "Not supported op RELU"}]


@pytest.mark.parametrize(
    ("variant", "runs", "reason"),
    [
        ("float32", True, None),
        ("int8", True, None),
        ("float16", False, "float16 weights"),
        ("dynamic_int8", False, "dynamic-range int8"),
    ],
)
def test_tflm_verdict_per_tflite_variant(tiny_model_dir, variant, runs, reason):
    verdict = tflm_compatibility(tiny_model_dir / f"model_{variant}.tflite")
    assert verdict["runs"] is runs and verdict["missing_ops"] == []
    assert (verdict["reason"] is None) if reason is None else (reason in verdict["reason"])


def test_tflm_lists_ops_missing_from_its_resolver(uncommon_ops_tflite):
    verdict = tflm_compatibility(uncommon_ops_tflite)
    assert not verdict["runs"]
    assert verdict["missing_ops"] == ["FlexCos", "FlexIdentity", "FlexTopKV2"]


def test_a_file_that_is_not_a_model_is_named(tmp_path):
    from toolkit.errors import ExitCode, ToolkitError

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"\x00" * 3)
    for check in (tflm_compatibility, gpu_delegate_compatibility):
        with pytest.raises(ToolkitError, match="broken.tflite: not a valid TFLite model") as caught:
            check(broken)
        assert caught.value.code == ExitCode.ARTIFACT


def test_tflm_refuses_an_int8_softmax_whose_input_scale_its_kernel_aborts_on(tmp_path):
    """Logits that span almost nothing (an untrained classifier, like MLPerf Tiny's wake-words
    model in `make bench`) give the int8 softmax an input scale on which TFLM's kernel aborts the
    process: the verdict names it, and TFLM does abort on the file."""
    import numpy as np

    from toolkit.errors import ExitCode, ToolkitError
    from toolkit.exporters import EXPORTERS, ExportContext
    from toolkit.exporters.tflite_micro import export_source
    from toolkit.formats.tflite_micro import HOST_ARENA_BYTES, try_arena
    from toolkit.process import import_tensorflow

    keras = import_tensorflow().keras
    flat_logits = keras.initializers.Constant(1e-9)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(4, "softmax", kernel_initializer=flat_logits)]
    )
    model.save(tmp_path / "model.keras")
    calibration = np.random.default_rng(0).random((32, 8), dtype=np.float32)
    context = ExportContext(model, tmp_path / "model.keras", calibration, 17, tmp_path / "build")
    [int8] = [v for v in EXPORTERS["tflite"] if v.variant == "int8"]
    path = tmp_path / int8.filename
    int8.write(model, path, context)

    verdict = tflm_compatibility(path)

    assert verdict["runs"] is False and verdict["missing_ops"] == []
    assert "int8 SOFTMAX input scale" in verdict["reason"]
    ran, stderr = try_arena(path, HOST_ARENA_BYTES)
    assert not ran and "SIGABRT" in stderr
    # Its C array is refused with that reason, not with the arena probe's crash.
    context.committed[int8.filename] = path
    with pytest.raises(ToolkitError) as refused:
        export_source(model, tmp_path / "model_int8.cc", context, int8.filename)
    assert refused.value.code == ExitCode.ARTIFACT
    assert str(refused.value) == f"{int8.filename}: TFLM cannot run it: {verdict['reason']}"
    assert not (tmp_path / "model_int8.cc").exists()
