"""Metrics on arrays small enough to check by hand."""

import numpy as np
import pytest

from toolkit.metrics import (
    accuracy,
    compare_outputs,
    latency_percentiles,
    pareto_front,
    per_class_accuracy,
)

PROBS = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
REF = np.array([[0.8, 0.2, 0.0], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
LABELS = np.array([0, 1, 2, 1])


def test_class_scores_get_class_and_generic_figures():
    assert accuracy(PROBS, LABELS) == 0.75  # rows 0,1,2 right; row 3 says 0, truth 1
    result = compare_outputs(PROBS, REF, LABELS)
    assert result.accuracy == 0.75
    assert result.agreement == 0.75  # row 1: 1 vs reference 0
    assert result.flipped == 1
    assert result.max_abs_diff == pytest.approx(0.4)
    error_power = np.mean((PROBS - REF) ** 2)
    assert result.rmse == pytest.approx(np.sqrt(error_power))
    assert result.snr_db == pytest.approx(10 * np.log10(np.mean(REF**2) / error_power))
    assert compare_outputs(PROBS, REF).accuracy is None  # no labels, no accuracy


def test_generic_outputs_have_no_class_figures():
    reference = np.array([[3.0, 4.0, 0.0]])  # one reconstruction-like row
    result = compare_outputs(
        reference * 2, reference, class_scores=False
    )  # same direction, twice the length
    assert result.agreement is None and result.flipped is None
    assert result.cosine == pytest.approx(1.0)
    assert result.max_abs_diff == pytest.approx(4.0)
    assert result.snr_db == pytest.approx(0.0)  # error power equals signal power
    assert compare_outputs(reference, reference, class_scores=False).snr_db == float("inf")
    assert compare_outputs(-reference, reference).cosine == pytest.approx(-1.0)


def test_non_finite_or_mismatched_outputs_are_refused():
    with pytest.raises(ValueError, match="NaN"):
        compare_outputs(np.array([[np.nan, 1.0]]), np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="shape"):
        compare_outputs(np.zeros((2, 3)), np.zeros((2, 4)))


def test_per_class_accuracy_with_an_empty_class():
    result = per_class_accuracy(PROBS, LABELS, classes=4)
    assert result[:3] == [1.0, 0.5, 1.0]
    assert np.isnan(result[3])


def test_latency_percentiles_in_milliseconds():
    samples_ns = np.arange(1, 101) * 1_000_000  # 1..100 ms
    result = latency_percentiles(samples_ns)
    assert result["min"] == 1.0
    assert result["p50"] == pytest.approx(50.5)
    assert result["p99"] == pytest.approx(99.01)
    assert result["mean"] == pytest.approx(50.5)


def test_pareto_front():
    acc = np.array([0.90, 0.89, 0.85, 0.90, 0.80])
    lat = np.array([5.0, 1.0, 2.0, 6.0, 0.5])
    # 0: best accuracy fastest among equals; 1: fast and nearly as good; 4: fastest.
    assert pareto_front(acc, lat).tolist() == [True, True, False, False, True]
