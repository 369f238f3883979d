"""Per-layer int8 error and mixed precision: a model whose full int8 fails because of one
layer's outlier weights is rescued by keeping that layer, and only it, in float."""

import json

import numpy as np
import pytest

from toolkit.arrays import only
from toolkit.figures import save_figure
from toolkit.metrics import compare_outputs
from toolkit.quantization.layers import layer_of, traced_scopes
from toolkit.quantization.records import (
    LayerErrors,
    TensorError,
    layer_errors_figure,
    layer_errors_json,
    ranked,
    worst_layers_message,
)
from toolkit.quantization.search import search_float_layers

MIN_AGREEMENT = 0.97  # export's int8 tolerance
BORDER = 4  # image columns that are black in every synthetic image


def synthetic_images(rng, count):
    """Ten noisy class prototypes over a shared background, left border always black."""
    base = np.random.default_rng(0).random((28, 28))
    prototypes = np.clip(base + 0.25 * np.random.default_rng(1).standard_normal((10, 28, 28)), 0, 1)
    labels = rng.integers(0, 10, count)
    images = prototypes[labels] + 0.5 * rng.standard_normal((count, 28, 28))
    images[:, :, :BORDER] = 0
    return np.clip(images, 0, 1).astype(np.float32), labels


def build_outlier_model(outliers: str = "weights"):
    """Flatten -> `outlier` -> `hidden` -> softmax, trained a few steps, then made int8-hostile
    without changing what the float model computes.

    "weights": the weights that read the always-black border become 100x the largest weight
    (0 x w changes nothing in float); int8 gives each output channel one scale, so every other
    weight of `outlier` rounds to zero or one step. Keeping `outlier` in float repairs it.
    "activations": two of `outlier`'s units are scaled up 100x and `hidden` reads them 100x
    weaker; int8 gives the tensor between them one scale, so the 30 other units round to a few
    steps. Only that tensor in float repairs it: `outlier` and `hidden` both in float.
    """
    from toolkit.process import import_tensorflow

    import_tensorflow()
    import keras

    keras.utils.set_random_seed(0)
    images, labels = synthetic_images(np.random.default_rng(2), 2000)
    model = keras.Sequential(
        [
            keras.Input((28, 28), name="images"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(32, activation="relu", name="outlier"),
            keras.layers.Dense(32, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="outliers",
    )
    # 64 steps: one traced graph costs less than running them eagerly
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(images, labels, epochs=2, batch_size=64, verbose=0)
    (kernel, bias), (next_kernel, next_bias) = (
        model.get_layer(name).get_weights() for name in ("outlier", "hidden")
    )
    if outliers == "weights":
        border = np.zeros((28, 28), bool)
        border[:, :2] = True
        rows = border.reshape(-1)
        signs = np.sign(np.random.default_rng(3).standard_normal((rows.sum(), kernel.shape[1])))
        kernel[rows] = 100 * np.abs(kernel).max() * signs
    else:
        kernel[:, :2] *= 100
        bias[:2] *= 100
        next_kernel[:2] /= 100
    model.get_layer("outlier").set_weights([kernel, bias])
    model.get_layer("hidden").set_weights([next_kernel, next_bias])
    return model


# What keeps each outlier model within tolerance: the fewest layers in float.
FLOAT_LAYERS = {"weights": {"outlier"}, "activations": {"outlier", "hidden"}}


@pytest.fixture(scope="module", params=sorted(FLOAT_LAYERS))
def outlier_model(request):
    return request.param, build_outlier_model(request.param)


@pytest.fixture(scope="module")
def tutorial_model():
    """The tutorial MLP with Keras's default layer names, trained a few steps."""
    from toolkit.process import import_tensorflow

    import_tensorflow()
    import keras

    from toolkit.model import build_mlp, compile_model

    keras.utils.set_random_seed(0)
    model = build_mlp()
    compile_model(model)
    images, labels = synthetic_images(np.random.default_rng(4), 1000)
    model.fit(images, labels, epochs=2, batch_size=64, verbose=0)
    return model


def _validation(model, rng_seed=5, count=500):
    images, _ = synthetic_images(np.random.default_rng(rng_seed), count)
    return images, model.predict(images, verbose=0)


def _savedmodel(model, folder):
    from toolkit.exporters.savedmodel import write_savedmodel

    write_savedmodel(model, str(folder))
    return folder


def _prepared_onnx(model, folder):
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from toolkit.exporters.onnx import write_float_onnx

    float_path, prepared = folder / "float.onnx", folder / "prepared.onnx"
    write_float_onnx(model, float_path, 17)
    quant_pre_process(float_path, prepared, skip_symbolic_shape=True)
    return prepared


def _calibration(count=200):
    return synthetic_images(np.random.default_rng(6), count)[0]


def _tflite_validator(tmp_path, images, reference):
    from toolkit.runners import LiteRTRunner

    def validate(flatbuffer):
        path = tmp_path / "candidate.tflite"
        path.write_bytes(flatbuffer)
        with LiteRTRunner(path) as runner:
            figures = compare_outputs(only(runner.predict(images)), reference).to_json()
        return figures, figures["agreement"] >= MIN_AGREEMENT

    return validate


def _onnx_validator(images, reference):
    from toolkit.runners import OnnxRuntimeRunner

    def validate(path):
        with OnnxRuntimeRunner(path) as runner:
            figures = compare_outputs(only(runner.predict(images)), reference).to_json()
        return figures, figures["agreement"] >= MIN_AGREEMENT

    return validate


def _float_tflite_ops(flatbuffer):
    """(op name, first output tensor name) of every op computing in float32."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = []
    for op in interpreter._get_ops_details():  # no public API lists ops with their tensors
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        if any(tensors[i]["dtype"] == np.float32 for i in op["inputs"] if i >= 0):
            ops.append((op["op_name"], tensors[op["outputs"][0]]["name"]))
    return ops


def test_traced_scopes_resolve_keras_suffixes():
    scopes = traced_scopes(["sequential", "flatten", "dense", "dense_1", "dense_2"])
    assert scopes == {
        "sequential_1": "sequential",
        "flatten_1": "flatten",
        "dense_1": "dense",
        "dense_1_2": "dense_1",
        "dense_2_1": "dense_2",
    }
    fused = "sequential_1/dense_1_2/MatMul/MatMulAddFusion"
    assert layer_of(fused, scopes, "sequential") == "dense_1"
    tflite = "sequential_1/dense_1/MatMul;sequential_1/dense_1/Relu;sequential_1/dense_1/BiasAdd"
    assert layer_of(tflite, scopes, "sequential") == "dense"
    assert layer_of("StatefulPartitionedCall:0", scopes, "sequential") == ""


def _tensor(layer, value):
    return TensorError(layer, f"{layer}:0", "activation", "Gemm", layer, {"noise_added": value})


def test_ranking_and_worst_layers_message():
    errors = LayerErrors(
        "onnx",
        "test",
        "noise_added",
        "noise_added",
        10,
        ranked(
            [_tensor(n, v) for n, v in zip("abcd", (0.1, 0.5, 0.01, 0.2), strict=True)],
            "noise_added",
        ),
    )
    assert [t.rank for t in errors.tensors] == [3, 1, 4, 2]
    assert errors.ranked_layers() == ["b", "d", "a", "c"]
    assert worst_layers_message(errors) == (
        "worst layers: b (noise_added 0.5); d (noise_added 0.2); a (noise_added 0.1)"
    )


@pytest.mark.parametrize(
    ("passing", "expected_layers", "passed", "builds"),
    [
        ({()}, (), True, 1),
        ({("b",), ("b", "d")}, ("b",), True, 2),
        ({("b", "d", "a"), ("b", "a")}, ("b", "a"), True, 6),  # d is given back: 2 more builds
        (set(), ("b", "d", "a"), False, 4),
    ],
)
def test_search_adds_one_layer_at_a_time_and_keeps_only_what_it_needs(
    passing, expected_layers, passed, builds
):
    built = []

    def build(float_layers):
        built.append(float_layers)
        return float_layers

    result = search_float_layers(
        ["b", "d", "a"], build, lambda m: ({"agreement": len(m)}, m in passing)
    )
    assert result.float_layers == expected_layers
    assert result.passed is passed and result.builds == builds == len(built)
    assert result.full_int8 == {"agreement": 0}
    assert result.mixed == (None if builds == 1 else {"agreement": len(expected_layers)})
    assert result.model == expected_layers


def _tflite_debugger(model, tmp_path, samples=200):
    from toolkit.quantization.layers import keras_layer_names
    from toolkit.quantization.tflite import TFLiteInt8Debugger

    savedmodel = _savedmodel(model, tmp_path / "savedmodel")
    return TFLiteInt8Debugger(savedmodel, _calibration(samples), keras_layer_names(model))


def _onnx_debugger(model, tmp_path, samples=200):
    from toolkit.quantization.layers import keras_layer_names
    from toolkit.quantization.onnx import OnnxInt8Debugger

    prepared = _prepared_onnx(model, tmp_path)
    return OnnxInt8Debugger(prepared, _calibration(samples), keras_layer_names(model), tmp_path)


def _tflite_search(model, tmp_path):
    debugger = _tflite_debugger(model, tmp_path)
    images, reference = _validation(model)
    validate = _tflite_validator(tmp_path, images, reference)
    return debugger, search_float_layers(
        debugger.errors.ranked_layers(), debugger.quantized_model, validate
    )


def test_tflite_mixed_precision_keeps_only_the_damaged_layers_in_float(outlier_model, tmp_path):
    outliers, model = outlier_model
    debugger, result = _tflite_search(model, tmp_path)
    assert result.full_int8["agreement"] < MIN_AGREEMENT
    assert result.passed and result.mixed["agreement"] >= MIN_AGREEMENT
    assert set(result.float_layers) == FLOAT_LAYERS[outliers]
    float_ops = _float_tflite_ops(result.model)
    assert [op for op, _ in float_ops] == ["FULLY_CONNECTED"] * len(FLOAT_LAYERS[outliers])
    scopes = {f"outliers_1/{layer}_1/MatMul" for layer in FLOAT_LAYERS[outliers]}
    assert {next(s for s in scopes if s in name) for _, name in float_ops} == scopes
    assert not _float_tflite_ops(debugger.quantized_model())  # full int8: no float op at all


def test_onnx_mixed_precision_keeps_only_the_damaged_layers_in_float(outlier_model, tmp_path):
    import onnx

    outliers, model = outlier_model
    debugger = _onnx_debugger(model, tmp_path)
    result = search_float_layers(
        debugger.errors.ranked_layers(),
        lambda layers: debugger.write(tmp_path / f"mixed_{len(layers)}.onnx", layers),
        _onnx_validator(*_validation(model)),
    )
    assert result.full_int8["agreement"] < MIN_AGREEMENT
    assert result.passed and result.mixed["agreement"] >= MIN_AGREEMENT
    assert set(result.float_layers) == FLOAT_LAYERS[outliers]
    graph = onnx.load(str(result.model)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    int8_weights = {
        n.name.split("/")[1].removesuffix("_1"): set(n.input[1:]) <= dequantized
        for n in graph.node
        if n.op_type == "Gemm"
    }
    assert int8_weights == {
        layer: layer not in FLOAT_LAYERS[outliers]
        for layer in ("outlier", "hidden", "probabilities")
    }


# Where the error shows: in the layer that rounds its own weights, or in the layer that reads
# the coarsely rounded tensor (the one that wrote it looks like plain rounding noise).
WORST_LAYER = {"weights": "outlier", "activations": "hidden"}


def test_worst_layers_message_names_where_the_error_shows(outlier_model, tmp_path):
    outliers, model = outlier_model
    for debugger in (_tflite_debugger, _onnx_debugger):
        errors = debugger(model, tmp_path).errors
        assert errors.ranked_layers()[0] == WORST_LAYER[outliers]
        assert worst_layers_message(errors).startswith(f"worst layers: {WORST_LAYER[outliers]} (")


def test_int8_that_passes_needs_no_float_layer(tutorial_model, tmp_path):
    _, result = _tflite_search(tutorial_model, tmp_path)
    assert result.passed and result.float_layers == () and result.mixed is None


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_tutorial_per_layer_records(tutorial_model, tmp_path, fmt):
    debugger = {"tflite": _tflite_debugger, "onnx": _onnx_debugger}[fmt]
    errors = debugger(tutorial_model, tmp_path, samples=50).errors
    content = layer_errors_json(f"model_int8.{fmt}", errors)
    path = tmp_path / "quantization" / f"model_int8.{fmt}.json"
    path.parent.mkdir()
    path.write_text(json.dumps(content))
    records = json.loads(path.read_text())["tensors"]
    # Keras numbers default names per process (dense, dense_1, ...): ask the model for its own.
    assert {r["layer"] for r in records} == {layer.name for layer in tutorial_model.layers}
    assert sorted(r["rank"] for r in records) == list(range(1, len(records) + 1))
    assert all(np.isfinite(v) for r in records for v in r["metrics"].values())
    assert content["samples"] == 50
    png = save_figure(layer_errors_figure(errors, f"model_int8.{fmt}"), path.with_suffix(".png"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_cnn_records_map_to_its_layers(tmp_path, fmt):
    """Conv, pooling and the layout ops converters add between them all find their layer;
    `conv2d_1` is traced as `conv2d_1_2`, and tf2onnx's unscoped Transpose joins a neighbour."""
    from toolkit.process import import_tensorflow

    import_tensorflow()
    from toolkit.model import build_cnn

    model = build_cnn()
    debugger = {"tflite": _tflite_debugger, "onnx": _onnx_debugger}[fmt]
    errors = debugger(model, tmp_path, samples=20).errors
    names = [layer.name for layer in model.layers]
    computing = {layer.name for layer in model.layers if layer.weights or "pooling" in layer.name}
    layers = [t.layer for t in errors.tensors]
    assert computing <= set(layers) <= set(names)  # ONNX folds `reshape` into conv2d's input
    assert layers == sorted(layers, key=names.index)  # graph order is layer order
