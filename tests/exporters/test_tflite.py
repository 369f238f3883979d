"""The tflite format: four variants, each checked for what its name promises."""

import numpy as np
import pytest

from tests.conftest import round_trip, tiny_artifact
from toolkit.exporters import EXPORTERS


def _tensors(path) -> list[dict]:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_tensor_details()


def check_float32(path, kernel_values):
    # int32 is the Flatten's shape constant; no tensor may be reduced below float32.
    assert {np.dtype(t["dtype"]).name for t in _tensors(path)} <= {"float32", "int32"}


def check_float16(path, kernel_values):
    # Every kernel stored as float16 (dequantized once at load): the float16 tensors must hold
    # at least as many values as the model's kernels, and nothing may be int8.
    tensors = _tensors(path)
    float16_values = sum(int(np.prod(t["shape"])) for t in tensors if t["dtype"] == np.float16)
    assert float16_values >= kernel_values
    assert np.int8 not in {t["dtype"] for t in tensors}


def check_dynamic_int8(path, kernel_values):
    tensors = _tensors(path)
    int8_values = sum(int(np.prod(t["shape"])) for t in tensors if t["dtype"] == np.int8)
    # int8 kernels (the converter leaves kernels under 1,024 values in float: 32x4 here)...
    assert int8_values >= kernel_values - 32 * 4
    assert np.float32 in {t["dtype"] for t in tensors}  # ...and float activations


def check_int8(path, kernel_values):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    int8_values = sum(int(np.prod(t["shape"])) for t in _tensors(path) if t["dtype"] == np.int8)
    assert int8_values >= kernel_values  # every kernel in int8


STRUCTURE = {
    "float32": check_float32,
    "float16": check_float16,
    "dynamic_int8": check_dynamic_int8,
    "int8": check_int8,
}


def test_every_tflite_variant_has_a_structure_check():
    assert {v.variant for v in EXPORTERS["tflite"]} == set(STRUCTURE)


@pytest.mark.parametrize("variant", EXPORTERS["tflite"], ids=lambda v: v.filename)
def test_tflite_structure_and_round_trip(tiny, variant):
    kernels = sum(int(np.prod(w.shape)) for w in tiny.model.weights if len(w.shape) == 2)
    STRUCTURE[variant.variant](tiny_artifact(tiny, variant), kernels)
    figures = round_trip(tiny, variant)
    assert variant.tolerance.failures(figures) == [], figures
