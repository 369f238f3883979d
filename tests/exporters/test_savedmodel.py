"""The savedmodel format: a serving_default signature from images to probabilities."""

import pytest

from tests.conftest import round_trip, tiny_artifact
from toolkit.exporters import EXPORTERS


@pytest.mark.parametrize("variant", EXPORTERS["savedmodel"], ids=lambda v: v.filename)
def test_savedmodel_structure_and_round_trip(tiny, variant):
    path = tiny_artifact(tiny, variant)
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    figures = round_trip(tiny, variant)
    assert variant.tolerance.failures(figures) == [], figures
