"""Pure-numpy metrics: the one comparator export validation and compare both use."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """How far an artifact's outputs are from the reference's, in the names tolerances use.

    The generic figures (max |diff|, RMSE, SNR, cosine) exist for every output; the class
    figures only for class scores (N, K), and accuracy only when labels are known.
    """

    max_abs_diff: float
    rmse: float
    snr_db: float  # 10 log10(signal power / error power); inf when identical
    cosine: float  # mean cosine similarity of the rows
    agreement: float | None = None  # share of identical top-1 classes
    flipped: int | None = None  # rows whose top-1 class changed
    accuracy: float | None = None

    def to_json(self) -> dict:
        return asdict(self)


def top_classes(scores: np.ndarray) -> np.ndarray:
    """The top-1 class of each row of class scores (N, K); one score column (N, 1) is a binary
    classifier's probability, class 1 at 0.5 and above."""
    if scores.shape[1] == 1:
        return (scores[:, 0] >= 0.5).astype(np.int64)
    return np.argmax(scores, axis=1)


def class_scores_of(scores: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Each row's score for its class in `classes` (a binary classifier's: p or 1 - p)."""
    if scores.shape[1] == 1:
        return np.where(classes == 1, scores[:, 0], 1 - scores[:, 0])
    return scores[np.arange(len(scores)), classes]


def worst_of(comparisons: dict[str, Comparison]) -> Comparison:
    """One summary of several outputs' figures: each figure's worst value over the outputs
    (the class figures over the outputs that have them)."""
    values = list(comparisons.values())
    if len(values) == 1:
        return values[0]

    def pick(name, worst):
        found = [getattr(c, name) for c in values if getattr(c, name) is not None]
        return worst(found) if found else None

    return Comparison(
        max_abs_diff=pick("max_abs_diff", max),
        rmse=pick("rmse", max),
        snr_db=pick("snr_db", min),
        cosine=pick("cosine", min),
        agreement=pick("agreement", min),
        flipped=pick("flipped", max),
        accuracy=pick("accuracy", min),
    )


def compare_outputs(
    outputs: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None = None,
    class_scores: bool = True,
) -> Comparison:
    """Every figure for `outputs` against `reference` (same shape); the class figures when the
    outputs are class scores (N, K) or a binary classifier's probability (N, 1), and accuracy
    when labels are known too."""
    out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if out.shape != ref.shape:
        raise ValueError(f"outputs {out.shape} and reference {ref.shape} differ in shape")
    if not np.isfinite(out).all():
        raise ValueError("outputs contain NaN or infinity")
    error = out - ref
    error_power, signal_power = float(np.mean(error**2)), float(np.mean(ref**2))
    with np.errstate(divide="ignore"):
        snr = float(10 * np.log10(signal_power / error_power)) if error_power else float("inf")
    norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
    dots = np.sum(out * ref, axis=1)
    cosine = float(np.mean(np.where(norms > 0, dots / np.where(norms > 0, norms, 1), 1.0)))
    figures = {
        "max_abs_diff": float(np.max(np.abs(error))) if error.size else 0.0,
        "rmse": float(np.sqrt(error_power)),
        "snr_db": snr,
        "cosine": cosine,
    }
    if class_scores:
        top, ref_top = top_classes(out), top_classes(ref)
        figures["agreement"] = float(np.mean(top == ref_top))
        figures["flipped"] = int(np.sum(top != ref_top))
        if labels is not None:
            figures["accuracy"] = float(np.mean(top == labels))
    return Comparison(**figures)


CLASS_KINDS = ("classifier", "binary")  # output kinds judged by their top-1 class


def compare_named(outputs: dict, reference: dict, heads: list[dict], labels: dict) -> dict:
    """Each output's Comparison by name, on its own kind: `heads` name each output and its kind
    (classifier, binary or values), `labels` are by classifier output name. ValueError for a
    missing output, NaN or a wrong shape."""
    judged = {}
    for head in heads:
        name = head["name"]
        if name not in outputs:
            raise ValueError(f"no output named {name!r} (found {', '.join(outputs)})")
        classes = head["kind"] in CLASS_KINDS
        judged[name] = compare_outputs(
            outputs[name], reference[name], labels.get(name) if classes else None, classes
        )
    return judged


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose top-1 class equals the label."""
    return float(np.mean(top_classes(probabilities) == labels))


def per_class_accuracy(probabilities: np.ndarray, labels: np.ndarray, classes: int) -> list[float]:
    """Accuracy within each true class (NaN for a class with no images)."""
    hits = top_classes(probabilities) == labels
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


def latency_quantiles(samples_ns: np.ndarray) -> dict[str, float]:
    """p1/p25/p50/p75/p99 in milliseconds: what the latency plot draws, stored so a report can be
    re-rendered without the per-call timings."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    keys = ("p1", "p25", "p50", "p75", "p99")
    return dict(zip(keys, map(float, np.percentile(ms, [1, 25, 50, 75, 99])), strict=True))


def flip_details(
    outputs: np.ndarray,
    reference: np.ndarray,
    labels: np.ndarray | None,
    indices_limit: int = 1000,
    gallery_limit: int = 32,
    cells_limit: int = 100,
) -> dict:
    """The inputs whose top-1 class differs from the reference's, for people to look at.

    Returns `flipped_indices` (the first `indices_limit`, ascending), `top_flips` (the
    `gallery_limit` flips the reference was surest about, with label, classes and scores) and
    `confusion_changes` (the (true, predicted) cells whose count changed, largest change first;
    None without labels).
    """
    out = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    top, ref_top = top_classes(out), top_classes(ref)
    flipped = np.flatnonzero(top != ref_top)
    ref_scores, scores = class_scores_of(ref, ref_top), class_scores_of(out, top)
    ref_score = ref_scores[flipped]
    surest = flipped[np.argsort(-ref_score, kind="stable")[:gallery_limit]]
    top_flips = [
        {
            "index": int(i),
            "label": None if labels is None else int(labels[i]),
            "reference_class": int(ref_top[i]),
            "reference_probability": float(ref_scores[i]),
            "class": int(top[i]),
            "probability": float(scores[i]),
        }
        for i in surest
    ]
    changes = None
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        classes = max(out.shape[1], 2)
        before, after = labels * classes + ref_top, labels * classes + top
        cells = np.unique(np.concatenate([before[flipped], after[flipped]]))
        counts = zip(cells, _occurrences(before, cells), _occurrences(after, cells), strict=True)
        changed = [(int(cell), int(b), int(a)) for cell, b, a in counts if a != b]
        changed.sort(key=lambda c: (-abs(c[2] - c[1]), c[0]))
        changes = [
            {"true": cell // classes, "predicted": cell % classes, "reference": b, "artifact": a}
            for cell, b, a in changed[:cells_limit]
        ]
    return {
        "flipped_indices": [int(i) for i in flipped[:indices_limit]],
        "top_flips": top_flips,
        "confusion_changes": changes,
    }


def _occurrences(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """How often each of `wanted` occurs in `values` (no K x K matrix for a 1,000-class model)."""
    ordered = np.sort(values)
    return np.searchsorted(ordered, wanted, side="right") - np.searchsorted(ordered, wanted)


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
