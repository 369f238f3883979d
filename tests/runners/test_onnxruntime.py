"""The ONNX Runtime runner on the float and QDQ int8 files."""

import pytest

from tests.runners.contract import check_runner_contract
from toolkit.exporters.base import Tolerance
from toolkit.runners import RUNNERS


@pytest.mark.parametrize(
    ("variant", "tolerance"),
    [
        ("float32", Tolerance(max_abs_diff=1e-5)),  # MLAS vs Eigen summation order: ~1e-7
        ("int8", Tolerance(min_agreement=0.95)),  # QDQ int8: the class must stay
    ],
)
def test_onnxruntime_runner_contract(tiny, variant, tolerance):
    check_runner_contract(RUNNERS["onnxruntime"], tiny, "onnx", variant, tolerance)
