"""Metrics on arrays small enough to check by hand."""

import numpy as np
import pytest

from toolkit.metrics import (
    accuracy,
    agreement,
    flipped,
    latency_percentiles,
    max_abs_diff,
    pareto_front,
    per_class_accuracy,
)

PROBS = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
REF = np.array([[0.8, 0.2, 0.0], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8], [0.5, 0.4, 0.1]])
LABELS = np.array([0, 1, 2, 1])


def test_accuracy_agreement_flipped():
    assert accuracy(PROBS, LABELS) == 0.75  # rows 0,1,2 right; row 3 says 0, truth 1
    assert agreement(PROBS, REF) == 0.75  # row 1: 1 vs reference 0
    assert flipped(PROBS, REF) == 1
    assert max_abs_diff(PROBS, REF) == pytest.approx(0.4)


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
