"""One-output models judged on their kind (issue 25): a binary classifier (one sigmoid output,
judged at 0.5) and a regression (one linear output, the generic figures), end to end."""

import pytest

from tests import multi_io_models as models


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    def build(folder):
        return models.build_single_head(folder, "sigmoid")

    return models.export_and_compare(tmp_path_factory, build, "binary", **models.JUDGING_ONLY)


@pytest.fixture(scope="module")
def regression(tmp_path_factory):
    def build(folder):
        return models.build_single_head(folder, "linear")

    return models.export_and_compare(tmp_path_factory, build, "regression", **models.JUDGING_ONLY)


def test_binary_classifier_is_judged_at_one_half(binary):
    manifest, report, _ = binary
    models.check_judged_rows(manifest, report)
    assert manifest.task == "classification" and manifest.class_names == ["dark", "bright"]
    assert manifest.outputs[0]["kind"] == "binary"
    reference = report.reference_row
    assert reference.accuracy is not None and reference.agreement == 1.0
    assert reference.outputs is None  # one output: the row's figures are its figures
    assert len(reference.per_class_accuracy) == 2


def test_regression_gets_the_generic_figures(regression):
    manifest, report, _ = regression
    models.check_judged_rows(manifest, report)
    assert manifest.task == "other" and manifest.outputs[0]["kind"] == "values"
    for row in report.rows:
        if row.ok and row.runtime in models.RUNTIMES:
            assert row.accuracy is None and row.agreement is None and row.snr_db is not None
