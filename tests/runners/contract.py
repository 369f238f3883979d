"""The contract every runner keeps, checked on one of the tiny model's files."""

import numpy as np

from tests.conftest import tiny_artifact
from toolkit.arrays import only
from toolkit.exporters import EXPORTERS
from toolkit.metrics import compare_outputs
from toolkit.process import quiet_stderr


def check_runner_contract(runner_class, tiny, format_name: str, variant: str, tolerance) -> None:
    """predict matches the Keras outputs within `tolerance`, keeps one row per input whatever
    the batch, and the bound call (the timed path) computes exactly what predict computes."""
    spec = next(v for v in EXPORTERS[format_name] if v.variant == variant)
    with quiet_stderr(), runner_class(tiny_artifact(tiny, spec), threads=1) as runner:
        outputs = only(runner.predict(tiny.inputs))
        assert outputs.shape == tiny.reference.shape and outputs.dtype == np.float32
        assert tolerance.failures(compare_outputs(outputs, tiny.reference)) == []
        assert (
            only(runner.predict(tiny.inputs[:257])).shape[0] == 257
        )  # not a multiple of the chunk
        for batch in (1, 7):
            call = runner.bind(tiny.inputs[:batch])
            call()
            bound = only(runner.bound_outputs())
            np.testing.assert_allclose(bound, outputs[:batch], rtol=0, atol=1e-6)
        inputs, outputs_detail = runner.io_details()
        assert len(inputs) == 1 and len(outputs_detail) == 1
        assert runner.runtime and runner.package and runner.suffixes


def predict_with(runtime: str, path, images):
    """`images` through `path` in the registered runtime."""
    from toolkit.runners import RUNNERS

    with RUNNERS[runtime](path) as runner:
        return only(runner.predict(images))
