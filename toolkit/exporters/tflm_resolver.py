"""The TFLite Micro op resolver a model needs, as C++: one `Add*()` call per operator it uses.

TFLM links only the kernels a firmware registers, and a kernel left out fails at run time
("Didn't find op"). The method names come from TFLM's own
tensorflow/lite/micro/micro_mutable_op_resolver.h (the commit below): each `Add*` method there
registers one `BuiltinOperator_*`, read from the header, not guessed from the op's name.
tests/data/tflm/ keeps that header; a test holds this table to it.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError

TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"  # tflite-micro, 2026-08-20

# BuiltinOperator name -> the MicroMutableOpResolver method that registers it.
BUILTIN_METHODS = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "DYNAMIC_UPDATE_SLICE": "AddDynamicUpdateSlice",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable",
    "REDUCE_ALL": "AddReduceAll",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "VAR_HANDLE": "AddVarHandle",
    "WHILE": "AddWhile",
    "ZEROS_LIKE": "AddZerosLike",
}
# Custom operators (by their custom code) that the resolver has a method for.
CUSTOM_METHODS = {
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "ethos-u": "AddEthosU",
}


def resolver_methods(tflite_path: Path) -> list[str]:
    """The Add* methods registering every operator of the file, in order of first use."""
    from toolkit.formats.tflite import graph_nodes

    methods, missing = [], []
    for node in graph_nodes(tflite_path):
        method = (CUSTOM_METHODS if node["custom"] else BUILTIN_METHODS).get(node["op"])
        if method is None:
            missing.append(node["op"])
        elif method not in methods:
            methods.append(method)
    if missing:
        raise ToolkitError(
            f"{tflite_path.name}: TFLite Micro's op resolver has no method for "
            f"{', '.join(sorted(set(missing)))}",
            ExitCode.CONVERSION,
        )
    return methods


def resolver_function(symbol: str, source_name: str, methods: list[str]) -> list[str]:
    """C++ lines of an inline function returning a MicroMutableOpResolver<N> that holds
    exactly `methods` (N = their count), in the shape of TFLM's own generated resolvers."""
    count = len(methods)
    resolver = f"tflite::MicroMutableOpResolver<{count}>"
    return [
        f"// The {count} kinds of operator {source_name} uses, each registered once:",
        f"//   auto resolver = {symbol}_op_resolver();",
        f"//   tflite::MicroInterpreter interpreter(tflite::GetModel({array(symbol)}), resolver,",
        f"//                                        tensor_arena, {arena_define(symbol)});",
        f"constexpr unsigned int {symbol}_operator_count = {count};",
        f"inline {resolver} {symbol}_op_resolver() {{",
        f"  {resolver} resolver;",
        *[f"  resolver.{method}();" for method in methods],
        "  return resolver;",
        "}",
    ]


def array(symbol: str) -> str:
    return f"g_{symbol}_model_data"


def arena_define(symbol: str) -> str:
    return f"{symbol.upper()}_ARENA_BYTES"
