"""Where a .tflite file can run besides a CPU interpreter: a phone's GPU delegate, TFLite Micro.

Pure functions over the flatbuffer: they answer before anyone buys hardware, and the TFLM
runner uses the same answer to refuse a file cleanly instead of letting the C++ crash.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError, first_line

# Builtin ops TFLite Micro's Python interpreter registers (python/tflite_micro/
# python_ops_resolver.cc, tflite-micro at 90b983c2, 2026-08); a firmware's own resolver
# registers a subset of these. Its custom ops are the detection post-processing and Ethos-U.
TFLM_BUILTIN_OPS = frozenset(
    """
    ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL
    BATCH_TO_SPACE_ND BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D
    COS CUMSUM DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU
    EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED
    GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH IF L2_NORMALIZATION L2_POOL_2D
    LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR LOGISTIC LOG_SOFTMAX
    MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2 PRELU
    QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR
    RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX
    SPACE_TO_BATCH_ND SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE
    STRIDED_SLICE SUB SUM SVDF TANH TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM
    UNPACK VAR_HANDLE WHILE ZEROS_LIKE
    """.split()  # noqa: SIM905 - a table of names reads better as words
)
TFLM_CUSTOM_OPS = frozenset({"TFLite_Detection_PostProcess", "ethos-u"})

# Builtin ops the TFLite GPU delegate has a parser for (tensorflow/lite/delegates/gpu/common/
# model_builder.cc, NewOperationParser; QUANTIZE/DEQUANTIZE with quantized models allowed, the
# delegate's default), and the tensor types it takes for tensors computed at run time.
GPU_BUILTIN_OPS = frozenset(
    """
    ABS ADD AVERAGE_POOL_2D BATCH_MATMUL CONCATENATION CONV_2D COS DEPTHWISE_CONV_2D
    DEQUANTIZE DIV ELU EXP FULLY_CONNECTED HARD_SWISH LEAKY_RELU LOG LOGISTIC LSTM MAXIMUM
    MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG PACK PAD POW PRELU QUANTIZE REDUCE_MAX
    REDUCE_MIN REDUCE_PROD RELU RELU6 RESHAPE RESIZE_BILINEAR RESIZE_NEAREST_NEIGHBOR RSQRT
    SIN SLICE SOFTMAX SPACE_TO_DEPTH SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE STRIDED_SLICE SUB
    SUM TANH TRANSPOSE TRANSPOSE_CONV
    """.split()  # noqa: SIM905 - a table of names reads better as words
)
GPU_CUSTOM_OPS = frozenset(
    {"Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D", "Resampler"}
)
GPU_TENSOR_TYPES = frozenset({"FLOAT32", "FLOAT16", "INT8", "UINT8"})

# Ops whose second input is a weight tensor: int8 weights with float inputs is dynamic range.
_WEIGHTED_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL"})


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


def _read_model(path: Path):
    """The flatbuffer as Python objects; a file that is not one is the user's to fix."""
    from ai_edge_litert.tools.flatbuffer_utils import convert_bytearray_to_object

    data = bytearray(Path(path).read_bytes())
    try:
        return convert_bytearray_to_object(data)
    except Exception as exc:  # noqa: BLE001 - the generated reader raises anything on bad bytes
        raise ToolkitError(
            f"{path}: not a valid TFLite model: {first_line(exc)}", ExitCode.ARTIFACT
        ) from None


def tflite_io(path: Path) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs of the main subgraph: signature name (else tensor name), dtype and
    affine quantization, for runtimes that do not report them (TFLM, OpenVINO)."""
    from ai_edge_litert import schema_py_generated as schema

    model = _read_model(path)
    subgraph = model.subgraphs[0]
    type_names = _enum_names(schema.TensorType)
    signature_names = {}
    for signature in model.signatureDefs or []:
        for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
            signature_names[entry.tensorIndex] = entry.name.decode()

    def describe(index: int) -> dict:
        tensor = subgraph.tensors[index]
        entry = {
            "name": signature_names.get(index, tensor.name.decode()),
            "dtype": type_names[tensor.type].lower(),
        }
        quantization = tensor.quantization
        if quantization is not None and quantization.scale is not None:
            entry["quantization"] = {
                "scale": float(quantization.scale[0]),
                "zero_point": int(quantization.zeroPoint[0]),
            }
        return entry

    return [describe(i) for i in subgraph.inputs], [describe(i) for i in subgraph.outputs]


def graph_nodes(path: Path) -> list[dict]:
    """Every operator of the main subgraph: its op name and its tensors' types and constness."""
    from ai_edge_litert import schema_py_generated as schema

    model = _read_model(path)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    subgraph = model.subgraphs[0]

    def tensor(index: int) -> dict:
        described = subgraph.tensors[index]
        buffer = model.buffers[described.buffer] if described.buffer else None
        is_constant = buffer is not None and buffer.data is not None and len(buffer.data) > 0
        quantization = described.quantization
        scales = quantization.scale if quantization is not None else None
        scale = float(scales[0]) if scales is not None and len(scales) else None
        return {"type": type_names[described.type], "constant": is_constant, "scale": scale}

    nodes = []
    for op in subgraph.operators or []:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = op_names[builtin] == "CUSTOM"
        nodes.append(
            {
                "op": code.customCode.decode() if custom else op_names[builtin],
                "custom": custom,
                "inputs": [tensor(i) for i in op.inputs if i >= 0],
                "outputs": [tensor(i) for i in op.outputs],
                "options": op.builtinOptions,  # the op's own options object (None: none)
            }
        )
    return nodes


# TFLM's int8 SOFTMAX scales its input by beta x scale x 2^26 (a fixed point with 5 integer
# bits) and aborts the process in its Prepare when that factor is not above 1: a model whose
# logits span almost nothing (an untrained classifier) gets such a scale.
TFLM_SOFTMAX_INPUT_FACTOR = 2.0**26


def _softmax_scales_tflm_aborts_on(nodes: list[dict]) -> list[float]:
    scales = []
    for node in nodes:
        if node["op"] != "SOFTMAX" or not node["inputs"] or node["inputs"][0]["type"] != "INT8":
            continue
        scale, beta = node["inputs"][0]["scale"], getattr(node["options"], "beta", 1.0)
        if scale is not None and scale * beta * TFLM_SOFTMAX_INPUT_FACTOR <= 1:
            scales.append(scale)
    return scales


def tflm_compatibility(path: Path) -> dict:
    """Whether TFLite Micro can run the file, and why not: ops missing from its op resolver,
    float16 weights, dynamic-range int8 (it runs float32 and fully-integer models only), or an
    int8 softmax whose input scale its kernel aborts on."""
    nodes = graph_nodes(path)
    missing = sorted(
        {
            n["op"]
            for n in nodes
            if n["op"] not in (TFLM_CUSTOM_OPS if n["custom"] else TFLM_BUILTIN_OPS)
        }
    )
    types = {t["type"] for n in nodes for t in n["inputs"] + n["outputs"]}
    hybrid = sorted(
        {
            n["op"]
            for n in nodes
            if n["op"] in _WEIGHTED_OPS
            and len(n["inputs"]) > 1
            and n["inputs"][0]["type"] == "FLOAT32"
            and n["inputs"][1]["type"] == "INT8"
        }
    )
    reasons = []
    if missing:
        reasons.append(f"ops missing from TFLM's op resolver: {', '.join(missing)}")
    if "FLOAT16" in types:
        reasons.append("float16 weights (TFLM has no float16 kernels)")
    if hybrid:
        reasons.append(
            f"dynamic-range int8 ({', '.join(hybrid)} with float32 inputs and int8 weights; "
            "TFLM runs float32 and full-int8 models)"
        )
    tiny_scales = _softmax_scales_tflm_aborts_on(nodes)
    if tiny_scales:
        reasons.append(
            f"int8 SOFTMAX input scale {min(tiny_scales):.3g} (TFLM's softmax aborts when beta "
            "x scale x 2^26 <= 1; the logits span almost nothing)"
        )
    return {"runs": not reasons, "missing_ops": missing, "reason": "; ".join(reasons) or None}


def _analyzer_warnings(path: Path) -> dict[int, str]:
    """Node index -> reason, from TFLite's model analyzer (it prints its report on stdout)."""
    from toolkit.process import import_tensorflow

    tf = import_tensorflow()
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(
            model_content=Path(path).read_bytes(), gpu_compatibility=True
        )
    warnings, subgraph, node = {}, None, None
    for line in report.getvalue().splitlines():
        if subgraph_line := re.match(r"Subgraph#(\d+)", line):
            subgraph, node = int(subgraph_line.group(1)), None
        elif op_line := re.match(r"\s+Op#(\d+) ", line):
            node = int(op_line.group(1)) if subgraph == 0 else None  # main-graph nodes only
        # The "WARNING: Subgraph#..." form only summarizes the nodes warned about above it.
        elif (warning := re.match(r"GPU COMPATIBILITY WARNING: (?!Subgraph#)(.*)", line)) and (
            node is not None
        ):
            warnings.setdefault(node, warning.group(1).strip())
    return warnings


def gpu_delegate_compatibility(path: Path) -> dict:
    """Whether TFLite's GPU delegate can take the whole graph, and the nodes it cannot take.

    Two sources, merged per node: the model analyzer's own check, and the delegate's op table
    and tensor types. The second is needed because the analyzer in TF 2.21 reports every model
    as compatible (it passes even Flex ops, which TF's own analyzer test expects it to flag).
    """
    nodes = graph_nodes(path)  # first: a file that is not a model fails with its name
    reasons = _analyzer_warnings(path)
    for index, node in enumerate(nodes):
        known = GPU_CUSTOM_OPS if node["custom"] else GPU_BUILTIN_OPS
        computed = [t["type"] for t in node["inputs"] + node["outputs"] if not t["constant"]]
        if node["op"] not in known:
            reasons.setdefault(index, f"the GPU delegate has no kernel for {node['op']}")
        elif bad_types := sorted(set(computed) - GPU_TENSOR_TYPES):
            reasons.setdefault(index, f"{node['op']} on {'/'.join(bad_types)} tensors")
    unsupported = [
        {"node": index, "op": nodes[index]["op"], "reason": reason}
        for index, reason in sorted(reasons.items())
    ]
    return {
        "whole_graph": not unsupported,
        "unsupported_ops": sorted({entry["op"] for entry in unsupported}),
        "nodes": unsupported,
    }


def tflite_compatibility(path: Path) -> dict:
    """Where a .tflite file can run beyond the CPU: the phone GPU delegate (whole graph or not,
    and the ops it cannot take) and TFLite Micro (missing ops); recorded once, at export."""
    gpu = gpu_delegate_compatibility(path)
    return {
        "gpu_delegate": {
            "whole_graph": gpu["whole_graph"],
            "unsupported_ops": gpu["unsupported_ops"],
        },
        "tflite_micro": tflm_compatibility(path),
    }
