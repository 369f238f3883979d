"""The keras format: a byte copy of the reference."""

import pytest

from tests.conftest import round_trip, tiny_artifact
from toolkit.exporters import EXPORTERS


@pytest.mark.parametrize("variant", EXPORTERS["keras"], ids=lambda v: v.filename)
def test_keras_copy_is_the_reference_byte_for_byte(tiny, variant):
    path = tiny_artifact(tiny, variant)
    assert path.read_bytes() == tiny.context.source.read_bytes()
    assert variant.tolerance.failures(round_trip(tiny, variant)) == []
