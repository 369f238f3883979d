"""report.json's schema, checked once at load (as manifests are): a file from someone else that
passes it renders, gates and serves as a baseline without a surprise deeper down.

Beyond the field types of `Report` and `Row`: every number fits a float and is finite, the
nested records (latency, flips, confusion cells, the gate) have their keys, lists match the
class count, names that become file names are plain, and the reference row exists.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.fsio import JSON_MAX_BYTES, PLAIN_NAME, plain_relative, read_capped, read_confined
from toolkit.results import ESTIMATED, FAILED, OK, UNSUPPORTED, Report, Row
from toolkit.schema import check_fields

INT_LIMIT = 2**63  # sizes and counts past int64 are no file's; float() of 10**400 overflows
LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "min")
QUANTILE_KEYS = ("p1", "p25", "p50", "p75", "p99")
STATUSES = (OK, FAILED, UNSUPPORTED, ESTIMATED)


@dataclass
class Gate:
    max_accuracy_drop: float | None = None
    max_latency_regression: float | None = None
    failures: list[str] | None = None
    fail_outside_tolerance: bool = False


@dataclass
class Flip:
    index: int
    label: int | None
    reference_class: int
    reference_probability: float
    probability: float
    # "class" is a keyword: checked by hand


@dataclass
class ConfusionCell:
    true: int
    predicted: int
    reference: int
    artifact: int


@dataclass
class GoneRow:
    artifact: str
    runtime: str
    accuracy: float | None
    p50: float | None


@dataclass
class GpuDelegate:
    whole_graph: bool
    unsupported_ops: list[str]


def load_report(path: Path, code: ExitCode, data: bytes | None = None) -> Report:
    """The Report in the report.json at `path` (its bytes `data` when already read), refused with
    `code` naming the field that is wrong: exit 2 for a baseline, 4 for OUT/report/report.json."""
    if data is None:
        data = read_capped(path, code, JSON_MAX_BYTES)
    try:
        return report_from_json(json.loads(data))
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise ToolkitError(
            f"{path}: not a usable toolkit report.json ({first_line(exc)})", code
        ) from None


def report_from_json(data: object) -> Report:
    """`Report.from_json(data)` once `data` passes the schema; ValueError naming the field."""
    _check_numbers(data, "report")
    check_fields(data, Report, skip=("rows", "latency_samples", "gate"), strict=False)
    _check_record(data.get("gate", {}), Gate, "gate")
    for key in ("max_accuracy_drop", "max_latency_regression"):
        if (data.get("gate", {}).get(key) or 0) < 0:
            raise ValueError(f"gate.{key} is negative")
    for k, gone in enumerate(data.get("baseline_gone") or []):
        _check_record(gone, GoneRow, f"baseline_gone[{k}]")
    rows = data["rows"]
    if not isinstance(rows, list):
        raise ValueError("field 'rows' is not a list")
    for k, row in enumerate(rows):
        _check_row(row, f"rows[{k}]", len(data["class_names"]))
    reference = [row for row in rows if row["artifact"] == data["reference"]]
    if not reference:
        raise ValueError(f"no row of the reference {data['reference']!r}")
    _check_accuracies(rows, reference[0])
    return Report.from_json(data)


def _check_numbers(value: object, where: str) -> None:
    """Every number fits int64 or is a finite float (json reads 1e999 and NaN without a word)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for k, item in enumerate(value):
            _check_numbers(item, f"{where}[{k}]")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= INT_LIMIT:
        raise ValueError(f"{where} is too large: {str(value)[:20]}...")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}, not a finite number")


def _check_record(value: object, cls: type, where: str, skip: tuple[str, ...] = ()) -> None:
    try:
        check_fields(value, cls, skip=skip, strict=False)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _check_row(row: object, where: str, classes: int) -> None:
    """One row: its fields' types, names that become file names, and its nested records."""
    _check_record(row, Row, where, skip=("per_class_accuracy",))  # it holds nulls: no items
    for key in ("artifact", "runtime"):
        if not PLAIN_NAME.fullmatch(row[key]):
            raise ValueError(f"{where}.{key} {row[key]!r} is not a plain file name")
    if row.get("status", OK) not in STATUSES:
        raise ValueError(f"{where}.status {row['status']!r} is none of {', '.join(STATUSES)}")
    if row.get("size_bytes") is not None and row["size_bytes"] < 0:
        raise ValueError(f"{where}.size_bytes is negative")
    for key in ("accuracy", "agreement"):
        if row.get(key) is not None and not 0 <= row[key] <= 1:
            raise ValueError(f"{where}.{key} {row[key]} is outside 0..1")
    _check_keys(row.get("latency_ms"), LATENCY_KEYS, f"{where}.latency_ms")
    _check_keys(row.get("latency_quantiles_ms"), QUANTILE_KEYS, f"{where}.latency_quantiles_ms")
    if row.get("status", OK) == OK and not (row.get("latency_ms") or {}).get("p50", 0) > 0:
        raise ValueError(f"{where}.latency_ms.p50 is missing or not above 0 in a measured row")
    _check_per_class(row.get("per_class_accuracy"), classes, f"{where}.per_class_accuracy")
    _check_flips(row, where)
    _check_quantization(row.get("quantization", {}), f"{where}.quantization")
    gpu = row.get("compatibility", {}).get("gpu_delegate")
    if gpu:
        _check_record(gpu, GpuDelegate, f"{where}.compatibility.gpu_delegate")
    arena = row.get("extras", {}).get("arena_bytes")
    if arena is not None and (not isinstance(arena, int) or isinstance(arena, bool) or arena < 0):
        raise ValueError(f"{where}.extras.arena_bytes is not a count of bytes")


def _check_keys(value: object, keys: tuple[str, ...], where: str) -> None:
    if value is None:
        return
    if missing := [key for key in keys if key not in value]:
        raise ValueError(f"{where} has no {missing[0]!r}")


def _check_per_class(values: object, classes: int, where: str) -> None:
    if values is None:
        return
    if not isinstance(values, list):
        raise ValueError(f"{where} is not a list")
    if len(values) != classes:
        raise ValueError(f"{where} has {len(values)} entries for {classes} class names")
    for value in values:
        if value is not None and not (isinstance(value, int | float) and 0 <= value <= 1):
            raise ValueError(f"{where} holds {value!r}, not an accuracy in 0..1 or null")


def _check_flips(row: dict, where: str) -> None:
    for k, flip in enumerate(row.get("top_flips") or []):
        _check_record(flip, Flip, f"{where}.top_flips[{k}]")
        if not isinstance(flip.get("class"), int) or isinstance(flip["class"], bool):
            raise ValueError(f"{where}.top_flips[{k}].class is not a class index")
        indices = [flip["index"], flip["reference_class"], flip["class"], flip["label"] or 0]
        if min(indices) < 0:
            raise ValueError(f"{where}.top_flips[{k}] holds a negative index")
    for k, cell in enumerate(row.get("confusion_changes") or []):
        _check_record(cell, ConfusionCell, f"{where}.confusion_changes[{k}]")
    if any(index < 0 for index in row.get("flipped_indices") or []):
        raise ValueError(f"{where}.flipped_indices holds a negative index")


def _check_quantization(record: dict, where: str) -> None:
    if "per_layer" in record:
        plain_relative(record["per_layer"], f"{where}.per_layer")
    layers = record.get("float_layers")
    if layers is not None and not (
        isinstance(layers, list) and all(isinstance(name, str) for name in layers)
    ):
        raise ValueError(f"{where}.float_layers is not a list of layer names")
    if not isinstance(record.get("replaces", {}), dict):
        raise ValueError(f"{where}.replaces is not an object")


def _check_accuracies(rows: list[dict], reference: dict) -> None:
    """Labels give every measured row an accuracy or none: a gate compares them."""
    if reference.get("status", OK) != OK:
        return
    labelled = reference.get("accuracy") is not None
    for k, row in enumerate(rows):
        if row.get("status", OK) == OK and (row.get("accuracy") is not None) != labelled:
            have = "has one" if labelled else "has none"
            accuracy = row.get("accuracy")
            raise ValueError(f"rows[{k}].accuracy is {accuracy} where the reference {have}")


def load_stored_report(out: Path) -> Report:
    """OUT/report/report.json as `toolkit report` re-renders it: read through no link, refused
    (exit 4) when it is not a regular file or fails the schema."""
    path = out / "report" / "report.json"
    data = read_confined(out, "report/report.json", ExitCode.ARTIFACT, JSON_MAX_BYTES)
    if data is None:
        raise ToolkitError(
            f"{path}: no such file; run `toolkit compare --out {out}` first", ExitCode.ARTIFACT
        )
    return load_report(path, ExitCode.ARTIFACT, data)
