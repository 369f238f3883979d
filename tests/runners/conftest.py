"""Inputs shared by the runtime tests that compare runtimes with each other."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def images():
    """28x28 inputs in [0, 1]: any values do when runtimes are compared with each other."""
    return np.random.default_rng(1).random((40, 28, 28), dtype=np.float32)
