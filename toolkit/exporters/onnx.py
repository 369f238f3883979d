"""ONNX via tf2onnx (float32) and ONNX Runtime's static QDQ quantization (int8)."""

import shutil
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError
from toolkit.exporters.base import ExportVariant, MixedPrecision, Tolerance, serving_function
from toolkit.model import INPUT_NAME

BATCH_DIM = "batch"


def name_batch_dimension(model_proto) -> None:
    """tf2onnx calls the batch dimension `unk__N`; users and tools expect a readable name."""
    for value in (*model_proto.graph.input, *model_proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = BATCH_DIM


def write_float_onnx(model, path: Path, opset: int, serve=None) -> None:
    # from_keras fails on Keras 3 models (tensorflow-onnx issue 2448); from_function on an
    # explicit signature matches Keras to ~1e-7. `serve`: the model's serving_function.
    import onnx
    import tf2onnx

    serve = serve or serving_function(model)
    model_proto, _ = tf2onnx.convert.from_function(
        serve, input_signature=serve.input_signature, opset=opset
    )
    name_batch_dimension(model_proto)
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(path))


def shared_float_onnx(context) -> Path:
    """The export's one tf2onnx graph, which both ONNX variants start from."""
    return context.shared_path(
        "float32.onnx",
        lambda path: write_float_onnx(context.model, path, context.opset, context.serving()),
    )


def shared_prepared_onnx(context) -> Path:
    """The float graph after ORT's quantization pre-processing, which fuses MatMul+Add into Gemm
    before quantizing: fewer Quantize/Dequantize pairs per call (measured: batch-1 p50 9.1 ->
    7.5 us, below float32). No symbolic shape inference: it needs sympy, and tf2onnx's shapes
    are already known. Fused nodes are renamed (.../MatMulAddFusion) by this step."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    return context.shared_path(
        "prepared.onnx",
        lambda path: quant_pre_process(shared_float_onnx(context), path, skip_symbolic_shape=True),
    )


def export_onnx_float32(model, path, context):
    shutil.copyfile(shared_float_onnx(context), path)


class CalibrationReader:
    """Feeds the calibration sample to ONNX Runtime's quantizer in batches of 32."""

    def __init__(self, input_name: str, images, batch: int = 32):
        self._batches = iter(
            {input_name: images[i : i + batch]} for i in range(0, len(images), batch)
        )

    def get_next(self):
        return next(self._batches, None)


def quantize_qdq(prepared_path: Path, path: Path, calibration, nodes_to_exclude=()) -> None:
    """Static int8 QDQ of a pre-processed float graph; `nodes_to_exclude` stay in float.

    One definition for the int8 export and the mixed-precision builds, so they differ only
    in the excluded nodes. `calibration` is shaped like the model input.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared_path),
        str(path),
        CalibrationReader(INPUT_NAME, calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=list(nodes_to_exclude),
    )


def int8_debugger(context):
    """ONNX Runtime's qdq_loss_debug on the export's pre-processed graph, built once."""
    from toolkit.quantization.layers import keras_layer_names
    from toolkit.quantization.onnx import OnnxInt8Debugger

    def build():
        scratch = context.build_dir / "onnx-debug"
        scratch.mkdir(parents=True, exist_ok=True)
        names = keras_layer_names(context.model)
        return OnnxInt8Debugger(shared_prepared_onnx(context), context.calibration, names, scratch)

    return context.shared("debugger:onnx", build)


def write_mixed(debugger, float_layers, path) -> None:
    debugger.write(path, float_layers)


def export_onnx_int8(model, path, context):
    """Static int8 QDQ: int8 weights and activations, float input and output at the edges."""
    quantize_qdq(shared_prepared_onnx(context), path, context.calibration)


def _tensors(graph):
    """Every TensorProto of a graph: initializers, sparse ones, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _node_tensors(graph.node)


def _node_tensors(nodes):
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def check_external_data(path: Path) -> None:
    """Refuses ONNX files whose external tensor data points outside the artifact's folder.

    Every tensor counts, not only initializers: a Constant node's value is read the same way.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model_proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as exc:
        raise ToolkitError(
            f"{path}: not a valid ONNX model ({type(exc).__name__})", ExitCode.ARTIFACT
        ) from None
    folder = path.parent.resolve()
    functions = (t for f in model_proto.functions for t in _node_tensors(f.node))
    for tensor in (*_tensors(model_proto.graph), *functions):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ToolkitError(
                f"{path}: tensor {tensor.name} reads external data from {location!r}, outside "
                f"{folder}; refusing to load it",
                ExitCode.ARTIFACT,
            )


# Same graph, ORT's MLAS kernels vs TF's Eigen: float32 summation order only (~1e-7).
FLOAT32 = Tolerance(max_abs_diff=1e-4)
# int8 activations and weights: scores move by a few percent; the class must stay (other
# outputs: error power at most 1% of signal power).
INT8 = Tolerance(min_agreement=0.97, min_snr_db=20.0)

VARIANTS = (
    ExportVariant(
        "onnx", "float32", "model_float32.onnx", "onnxruntime", FLOAT32, export_onnx_float32
    ),
    ExportVariant(
        "onnx",
        "int8",
        "model_int8.onnx",
        "onnxruntime",
        INT8,
        export_onnx_int8,
        MixedPrecision(int8_debugger, write_mixed, "model_mixed_int8.onnx"),
    ),
)
