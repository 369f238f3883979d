"""report.py on a hand-built compare result: recommendation, table, files and plots (no TF)."""

import csv
import io
import json
import re

import numpy as np
import pytest
from rich.console import Console

from toolkit.report import PLOTS, STAR, recommend, report_table, write_reports

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat"]
CLASSES += ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ok_row(artifact: str, runtime: str, accuracy: float, p50: float, size: int) -> dict:
    stem, _, fmt = artifact.partition(".")
    return {
        "artifact": artifact,
        "format": fmt,
        "variant": stem.partition("_")[2] or "float32",
        "runtime": runtime,
        "status": "ok",
        "error": None,
        "accuracy": accuracy,
        "agreement": 0.998,
        "flipped": 20,
        "max_abs_diff": 3e-7,
        "per_class_accuracy": [round(accuracy - 0.01 * (i % 4), 4) for i in range(10)],
        "latency_ms": {
            "p50": p50,
            "p90": p50 * 1.2,
            "p99": p50 * 2,
            "mean": p50 * 1.1,
            "std": p50 / 10,
            "min": p50 * 0.8,
        },
        "throughput_ips": 1000 / p50,
        "load_ms": 3.2,
        "size_bytes": size,
        "peak_rss_mb": 180.5,
    }


def failed_row(artifact: str, runtime: str, error: str) -> dict:
    row = ok_row(artifact, runtime, 0.0, 1.0, 0)
    metrics = ["accuracy", "agreement", "flipped", "max_abs_diff", "per_class_accuracy"]
    metrics += ["latency_ms", "throughput_ips", "load_ms", "size_bytes", "peak_rss_mb"]
    return row | dict.fromkeys(metrics) | {"status": "failed", "error": error}


@pytest.fixture(params=["plain", "baseline"])
def report(request) -> dict:
    """Four artifacts, one failed; the "baseline" variant carries the delta columns."""
    rows = [
        ok_row("model.keras", "keras", 0.8774, 0.95, 1_220_000),
        ok_row("model_float32.tflite", "litert", 0.8774, 0.052, 407_000),
        ok_row("model_int8.tflite", "litert", 0.8760, 0.031, 104_000),
        failed_row("model.onnx", "onnxruntime", "onnxruntime: InvalidGraph | bad node"),
    ]
    if request.param == "baseline":
        for row, deltas in zip(
            rows, [(0.0, 1.5), (-0.1, -3.0), (0.2, 12.5), (None, None)], strict=True
        ):
            row["delta_accuracy_pts"], row["delta_p50_pct"] = deltas
    return {
        "threads": 1,
        "reference": "model.keras",
        "created": "2026-11-25T12:00:00+00:00",
        "environment": {
            "cpu": "Test CPU",
            "cores": 2,
            "python": "3.11.7",
            "versions": {"tensorflow": "2.21.0", "onnxruntime": "1.20.0"},
        },
        "class_names": CLASSES,
        "recommended": "model_int8.tflite",
        "rows": rows,
    }


@pytest.fixture
def latency_samples(report) -> dict:
    rng = np.random.default_rng(0)
    return {
        row["artifact"]: row["latency_ms"]["p50"] * rng.lognormal(0.0, 0.2, 500)
        for row in report["rows"]
        if row["status"] == "ok"
    }


# --- recommend ----------------------------------------------------------------------------------


def test_recommend_picks_fastest_within_half_a_point(report):
    assert recommend(report["rows"], 0.8774) == "model_int8.tflite"


def test_recommend_falls_back_to_reference_when_nothing_else_is_close():
    rows = [
        ok_row("model.keras", "keras", 0.8774, 0.95, 1),
        ok_row("model_float32.tflite", "litert", 0.8720, 0.05, 1),  # 0.54 pt lower
        ok_row("model_int8.tflite", "litert", 0.8500, 0.03, 1),
    ]
    assert recommend(rows, 0.8774) == "model.keras"


def test_recommend_counts_a_drop_of_exactly_half_a_point():
    rows = [
        ok_row("model.keras", "keras", 0.8774, 0.95, 1),
        ok_row("model_int8.tflite", "litert", 0.8724, 0.03, 1),
    ]
    assert recommend(rows, 0.8774) == "model_int8.tflite"


def test_recommend_ignores_failed_rows():
    fast_but_failed = failed_row("model.onnx", "onnxruntime", "boom")
    fast_but_failed |= {"accuracy": 0.88, "latency_ms": {"p50": 0.001}}
    rows = [ok_row("model.keras", "keras", 0.8774, 0.95, 1), fast_but_failed]
    assert recommend(rows, 0.8774) == "model.keras"
    assert recommend([fast_but_failed], 0.8774) is None


def test_recommend_accepts_more_accurate_rows_and_a_custom_budget():
    rows = [
        ok_row("model.keras", "keras", 0.8774, 0.95, 1),
        ok_row("model_float16.tflite", "litert", 0.8790, 0.04, 1),
        ok_row("model_int8.tflite", "litert", 0.8700, 0.03, 1),
    ]
    assert recommend(rows, 0.8774) == "model_float16.tflite"
    assert recommend(rows, 0.8774, within_pts=1.0) == "model_int8.tflite"


# --- terminal table -----------------------------------------------------------------------------


def render(report) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(report_table(report))
    return console.file.getvalue()


def test_table_is_deterministic_and_stars_only_the_recommended_row(report):
    text = render(report)
    assert text == render(report)
    for row in report["rows"]:
        lines = [line for line in text.splitlines() if row["artifact"] in line]
        assert len(lines) == 1, row["artifact"]
        assert (STAR in lines[0]) == (row["artifact"] == report["recommended"])


def test_table_sorts_by_p50_with_failed_rows_last_showing_the_error(report):
    text = render(report)
    order = ["model_int8.tflite", "model_float32.tflite", "model.keras", "model.onnx"]
    positions = [text.index(name) for name in order]
    assert positions == sorted(positions)
    assert "InvalidGraph" in text


def test_table_has_delta_columns_only_with_a_baseline(report):
    has_baseline = "delta_p50_pct" in report["rows"][0]
    assert ("Δp50" in render(report)) == has_baseline
    assert ("+12.5" in render(report)) == has_baseline


def test_table_without_recommendation_has_no_star(report):
    assert STAR not in render(report | {"recommended": None})


# --- files --------------------------------------------------------------------------------------


def test_write_reports_writes_every_file(report, latency_samples, tmp_path):
    paths = write_reports(report, latency_samples, tmp_path / "reports")
    names = {"report.json", "report.csv", "report.md", "report.html", *PLOTS}
    assert {p.name for p in paths} == names
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(names)


def test_report_json_round_trips(report, latency_samples, tmp_path):
    write_reports(report, latency_samples, tmp_path)
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_report_csv_has_one_row_per_artifact_with_p50(report, latency_samples, tmp_path):
    write_reports(report, latency_samples, tmp_path)
    with open(tmp_path / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["artifact"] for r in rows] == [r["artifact"] for r in report["rows"]]
    for parsed, row in zip(rows, report["rows"], strict=True):
        expected = "" if row["latency_ms"] is None else row["latency_ms"]["p50"]
        assert parsed["latency_p50_ms"] == str(expected)
        assert parsed["status"] == row["status"]
    assert rows[0]["acc_9"] == str(report["rows"][0]["per_class_accuracy"][9])
    assert ("delta_p50_pct" in rows[0]) == ("delta_p50_pct" in report["rows"][0])


def test_report_md_names_every_artifact_and_failure(report, latency_samples, tmp_path):
    write_reports(report, latency_samples, tmp_path)
    text = (tmp_path / "report.md").read_text()
    assert all(row["artifact"] in text for row in report["rows"])
    assert "InvalidGraph \\| bad node" in text  # a `|` in a cell must not split the table


def test_plots_are_png(report, latency_samples, tmp_path):
    write_reports(report, latency_samples, tmp_path)
    for name in PLOTS:
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE), name


def test_report_html_is_self_contained(report, latency_samples, tmp_path):
    write_reports(report, latency_samples, tmp_path)
    text = (tmp_path / "report.html").read_text()
    assert text.count('src="data:image/png;base64,') == len(PLOTS)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert all(row["artifact"] in text for row in report["rows"])
    assert "InvalidGraph | bad node" in text and "Test CPU" in text and "2.21.0" in text


def test_write_reports_with_only_failed_rows(report, tmp_path):
    failed = report | {
        "recommended": None,
        "rows": [failed_row("model.onnx", "onnxruntime", "boom")],
    }
    paths = write_reports(failed, {}, tmp_path)
    assert len(paths) == 8
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in paths if p.suffix == ".png")
