"""The Keras runner on the reference file."""

from tests.runners.contract import check_runner_contract
from toolkit.exporters.base import Tolerance
from toolkit.runners import RUNNERS


def test_keras_runner_contract(tiny):
    # The same model in the same runtime: only batch-dependent summation order differs.
    check_runner_contract(RUNNERS["keras"], tiny, "keras", "float32", Tolerance(max_abs_diff=1e-5))
