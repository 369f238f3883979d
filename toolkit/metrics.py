"""Pure-numpy metrics: what compare and export validation report about an artifact."""

from __future__ import annotations

import numpy as np


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose top-1 class equals the label."""
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))


def agreement(probabilities: np.ndarray, reference: np.ndarray) -> float:
    """Share of rows whose top-1 class equals the reference's top-1 class."""
    return float(np.mean(np.argmax(probabilities, axis=1) == np.argmax(reference, axis=1)))


def flipped(probabilities: np.ndarray, reference: np.ndarray) -> int:
    """How many predictions changed class relative to the reference."""
    return int(np.sum(np.argmax(probabilities, axis=1) != np.argmax(reference, axis=1)))


def max_abs_diff(probabilities: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(probabilities.astype(np.float64) - reference)))


def per_class_accuracy(probabilities: np.ndarray, labels: np.ndarray, classes: int) -> list[float]:
    """Accuracy within each true class (NaN for a class with no images)."""
    hits = np.argmax(probabilities, axis=1) == labels
    counts = np.bincount(labels, minlength=classes)
    correct = np.bincount(labels, weights=hits, minlength=classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [float(v) for v in correct / counts]


def latency_percentiles(samples_ns: np.ndarray) -> dict[str, float]:
    """p50/p90/p99/mean/std/min in milliseconds from per-call timings in nanoseconds."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(ms.mean()),
        "std": float(ms.std()),
        "min": float(ms.min()),
    }


def pareto_front(accuracy_values: np.ndarray, latency_values: np.ndarray) -> np.ndarray:
    """Mask of points no other point beats on both accuracy (higher) and latency (lower)."""
    acc = np.asarray(accuracy_values, dtype=np.float64)
    lat = np.asarray(latency_values, dtype=np.float64)
    dominated = (
        (acc[None, :] >= acc[:, None])
        & (lat[None, :] <= lat[:, None])
        & ((acc[None, :] > acc[:, None]) | (lat[None, :] < lat[:, None]))
    )
    return ~dominated.any(axis=1)
