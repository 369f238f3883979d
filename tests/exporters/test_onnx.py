"""The onnx format: float32 through tf2onnx, static int8 QDQ through ONNX Runtime."""

import pytest

from tests.conftest import round_trip, tiny_artifact
from toolkit.exporters import EXPORTERS


def _ops(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def check_float32(path):
    import onnx

    model = onnx.load(str(path))
    assert model.graph.input[0].name == "images"
    assert model.graph.output[0].name == "probabilities"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert "QuantizeLinear" not in _ops(path)


def check_int8(path):
    import onnx

    assert {"QuantizeLinear", "DequantizeLinear"} <= _ops(path)
    initializers = onnx.load(str(path)).graph.initializer
    assert any(t.data_type == onnx.TensorProto.INT8 for t in initializers), "no int8 weights"


STRUCTURE = {"float32": check_float32, "int8": check_int8}


def test_every_onnx_variant_has_a_structure_check():
    assert {v.variant for v in EXPORTERS["onnx"]} == set(STRUCTURE)


@pytest.mark.parametrize("variant", EXPORTERS["onnx"], ids=lambda v: v.filename)
def test_onnx_structure_and_round_trip(tiny, variant):
    STRUCTURE[variant.variant](tiny_artifact(tiny, variant))
    figures = round_trip(tiny, variant)
    assert variant.tolerance.failures(figures) == [], figures
