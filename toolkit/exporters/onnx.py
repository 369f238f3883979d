"""ONNX via tf2onnx (float32) and ONNX Runtime's static QDQ quantization (int8)."""

import shutil
from pathlib import Path

from toolkit.exporters.base import ExportVariant, MixedPrecision, Retry, Tolerance
from toolkit.exporters.conversion import calibration_file, convert
from toolkit.formats.keras import serving_function

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
    before quantizing: fewer Quantize/Dequantize pairs per call (README, Performance). No
    symbolic shape inference: it needs sympy, and tf2onnx's shapes
    are already known. Fused nodes are renamed (.../MatMulAddFusion) by this step."""
    return context.shared_path(
        "prepared.onnx",
        lambda path: convert(context, "onnx_prepared", str(shared_float_onnx(context)), str(path)),
    )


def export_onnx_float32(model, path, context):
    shutil.copyfile(shared_float_onnx(context), path)


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


def write_mixed_reduce_range(debugger, float_layers, path) -> None:
    """A mixed model with 7-bit weights, for a search that starts from the 7-bit file."""
    debugger.write(path, float_layers, reduce_range=True)


def export_onnx_int8(model, path, context):
    """Static int8 QDQ: int8 weights and activations, float input and output at the edges."""
    _convert_qdq(context, path, reduce_range=False)


def export_onnx_int8_reduce_range(model, path, context):
    """The same with 7-bit weights: without VNNI, ORT's and OpenVINO's u8s8 kernels add pairs
    of products in 16 bits, which 8-bit weights can saturate and 7-bit ones cannot."""
    _convert_qdq(context, path, reduce_range=True)


def _convert_qdq(context, path: Path, reduce_range: bool) -> None:
    """`quantize_qdq` in the export's converter process (`exporters.conversion`)."""
    prepared, calibration = str(shared_prepared_onnx(context)), calibration_file(context)
    convert(context, "qdq", prepared, str(path), calibration, reduce_range)


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
        retry=Retry("reduce_range", export_onnx_int8_reduce_range, write_mixed_reduce_range),
    ),
)
