"""Typed compare results: one `Row` per (artifact, runtime), one `Report` that every file renders.

report.json is `Report.to_json()`; the terminal table, CSV, Markdown and HTML read the same
object, so a field added here reaches every rendering and the failed-row nulls come from the
field defaults rather than a hand-kept key list.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np

OK, FAILED, UNSUPPORTED = "ok", "failed", "unsupported"
ESTIMATED = "estimated"  # a file nothing here runs (an NPU's): its compiler's figures only
LOCAL = "local"  # the device of rows measured on this machine
DELTA_KEYS = ("delta_accuracy_pts", "delta_p50_pct")


def finite_or_none(value):
    """JSON has no NaN or infinity: such a figure is written as null (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # not `list | tuple`: the ssh agent ships this to 3.9
        return [finite_or_none(v) for v in value]
    return value


def device_host(name: str) -> str:
    """A device's short name for tables: `pi@pi5.local` for `ssh://pi@pi5.local?python=...`."""
    return name.removeprefix("ssh://").split("?", 1)[0]


@dataclass(frozen=True)
class Row:
    """One artifact measured in one runtime; every figure is None unless status is "ok"."""

    artifact: str
    format: str
    variant: str
    runtime: str
    size_bytes: int | None
    status: str = OK
    error: str | None = None
    accuracy: float | None = None  # None also when the data has no labels
    agreement: float | None = None  # None for outputs that are not class scores
    flipped: int | None = None
    max_abs_diff: float | None = None
    rmse: float | None = None
    snr_db: float | None = None
    cosine: float | None = None
    per_class_accuracy: list[float] | None = None
    latency_ms: dict[str, float] | None = None  # p50, p90, p99, mean, std, min
    latency_quantiles_ms: dict[str, float] | None = None  # p1, p25, p50, p75, p99: the plot
    latency_runs: int | None = None
    throughput_ips: float | None = None
    load_ms: float | None = None
    peak_rss_mb: float | None = None
    extras: dict = field(default_factory=dict)  # runtime-specific: arena bytes, settings
    compatibility: dict = field(default_factory=dict)  # .tflite: GPU delegate, TFLite Micro
    quantization: dict = field(default_factory=dict)  # int8: per-layer record, float layers
    # Whether the figures stay within the tolerance the artifact was validated to at export, by
    # the same comparator; None for the reference and for an artifact exported unvalidated.
    within_tolerance: bool | None = None
    tolerance_misses: list[str] | None = None  # each bound missed, e.g. "snr_db 12.9 < 20"
    delta_accuracy_pts: float | None = None  # with a baseline only
    delta_p50_pct: float | None = None
    # Where the top-1 class differs from the reference's (see metrics.flip_details).
    flipped_indices: list[int] | None = None  # the first 1,000 indices into the evaluation set
    top_flips: list[dict] | None = None  # the 32 the reference was surest about: the galleries
    confusion_changes: list[dict] | None = None  # (true, predicted) cells whose count changed
    # Where it ran: "name" ("local" or an ssh:// device) and the machine's description.
    device: dict = field(default_factory=dict)
    # A model with several outputs: each output's figures by name (kind, max_abs_diff, rmse,
    # snr_db, cosine, and agreement, flipped, accuracy for a classifier); the row's own figures
    # above are the worst of them. None for a model with one output.
    outputs: dict[str, dict] | None = None

    @property
    def device_name(self) -> str:
        name = self.device.get("name") if isinstance(self.device, dict) else None
        return name if isinstance(name, str) and name else LOCAL

    @property
    def key(self) -> tuple[str, ...]:
        """(artifact, runtime), and the device when it is not the host: a report from before
        devices existed matches its rows on the host."""
        if self.device_name == LOCAL:
            return (self.artifact, self.runtime)
        return (self.artifact, self.runtime, self.device_name)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def p50(self) -> float | None:
        return None if self.latency_ms is None else self.latency_ms["p50"]

    def to_json(self, with_deltas: bool) -> dict:
        data = finite_or_none(asdict(self))
        if not with_deltas:
            for key in DELTA_KEYS:
                data.pop(key)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Row:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Report:
    """What `toolkit compare` measured, with the settings and environment it measured under."""

    threads: int
    reference: str
    created: str
    environment: dict
    class_names: list[str]
    test_images: int
    settings: dict
    rows: tuple[Row, ...]
    recommended: str | None = None  # an artifact name, as report.json has always said
    recommended_runtime: str | None = None
    gate: dict = field(
        default_factory=lambda: {
            "max_accuracy_drop": None,
            "max_latency_regression": None,
            "failures": [],
        }
    )
    baseline: str | None = None  # the report.json the deltas compare against
    # With a baseline: [artifact, runtime] of rows it did not have, and its rows that are gone.
    baseline_new: list[list[str]] | None = None
    baseline_gone: list[dict] | None = None  # artifact, runtime, accuracy, p50 (ms) then
    warnings: tuple[str, ...] = ()
    # The model's outputs as export judged them: name, shape, kind (classifier, binary or
    # values) and class names; one entry for a model with one output.
    outputs: list[dict] = field(default_factory=list)
    # Each ssh:// device's recommendation, [artifact, runtime] (`recommended` is the host's).
    recommended_by_device: dict[str, list[str]] = field(default_factory=dict)
    # Per-call latencies in ms by row key, for API callers; not stored in report.json (the
    # latency plot draws each row's stored `latency_quantiles_ms`).
    latency_samples: dict[tuple[str, str], np.ndarray] = field(
        default_factory=dict, repr=False, compare=False
    )

    @property
    def reference_row(self) -> Row:
        return next(row for row in self.rows if row.artifact == self.reference)

    def label(self, row: Row) -> str:
        """The row's name for people: the artifact, plus the runtime when it has several rows
        on its device, plus the device when it is not this machine."""
        several = sum(
            r.artifact == row.artifact and r.device_name == row.device_name for r in self.rows
        )
        name = f"{row.artifact} [{row.runtime}]" if several > 1 else row.artifact
        return name if row.device_name == LOCAL else f"{name} @ {device_host(row.device_name)}"

    def is_recommended(self, row: Row) -> bool:
        if row.device_name != LOCAL:
            pick = self.recommended_by_device.get(row.device_name)
            return pick == [row.artifact, row.runtime]
        return (row.artifact, row.runtime) == (self.recommended, self.recommended_runtime)

    def with_(self, **changes) -> Report:
        return replace(self, **changes)

    def to_json(self) -> dict:
        with_deltas = self.baseline is not None
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "latency_samples"}
        data["rows"] = [row.to_json(with_deltas) for row in self.rows]
        data["warnings"] = list(self.warnings)
        return finite_or_none(data)

    @classmethod
    def from_json(cls, data: dict) -> Report:
        known = {f.name for f in fields(cls)} - {"latency_samples"}
        values = {k: v for k, v in data.items() if k in known}
        values["rows"] = tuple(Row.from_json(row) for row in data["rows"])
        values["warnings"] = tuple(data.get("warnings", ()))
        return cls(**values)
