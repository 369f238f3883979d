"""The TensorFlow runner on the SavedModel's serving_default signature."""

from tests.runners.contract import check_runner_contract
from toolkit.exporters.base import Tolerance
from toolkit.runners import RUNNERS


def test_savedmodel_runner_contract(tiny):
    # Same TF kernels as the reference; graph rewrites move values by ~1e-7.
    check_runner_contract(
        RUNNERS["tensorflow"], tiny, "savedmodel", "float32", Tolerance(max_abs_diff=1e-5)
    )
