"""The LiteRT runner: float files as they are, integer I/O (de)quantized inside."""

import numpy as np
import pytest

from tests.runners.contract import check_runner_contract
from toolkit.exporters.base import Tolerance
from toolkit.runners import RUNNERS
from toolkit.runners.base import dequantize, quantize


@pytest.mark.parametrize(
    ("variant", "tolerance"),
    [
        # XNNPACK vs Eigen summation order: ~1e-6.
        ("float32", Tolerance(max_abs_diff=1e-5)),
        # int8 input and output: quantized and dequantized by the runner; the class must stay.
        ("int8", Tolerance(min_agreement=0.95)),
    ],
)
def test_litert_runner_contract(tiny, variant, tolerance):
    check_runner_contract(RUNNERS["litert"], tiny, "tflite", variant, tolerance)


def test_quantize_round_trip_saturates():
    values = np.array([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    q = quantize(values, 1 / 255, -128, np.int8)
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
    np.testing.assert_allclose(dequantize(q, 1 / 255, -128)[1:4], [0.0, 0.5, 1.0], atol=1 / 255)
