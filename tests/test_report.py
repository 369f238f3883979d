"""report.py on a hand-built compare result: recommendation, table, files and plots (no TF)."""

import csv
import io
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from toolkit.evaluate import recommend
from toolkit.report import PLOTS, STAR, report_table, write_reports
from toolkit.results import Report

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


def report_of(rows: list[dict], **fields) -> Report:
    """A Report around hand-made rows (the first is the reference)."""
    return Report.from_json(
        {
            "threads": 1,
            "reference": rows[0]["artifact"],
            "created": "2026-11-25T12:00:00+00:00",
            "environment": {"cpu": "Test CPU"},
            "class_names": CLASSES,
            "test_images": 10000,
            "settings": {},
            "rows": rows,
        }
        | fields
    )


def make_report(baseline: bool) -> Report:
    """Four artifacts, one failed; with a baseline the rows carry the delta columns."""
    rows = [
        ok_row("model.keras", "keras", 0.8774, 0.95, 1_220_000),
        ok_row("model_float32.tflite", "litert", 0.8774, 0.052, 407_000),
        ok_row("model_int8.tflite", "litert", 0.8760, 0.031, 104_000),
        failed_row("model.onnx", "onnxruntime", "onnxruntime: InvalidGraph | bad node"),
    ]
    if baseline:
        for row, deltas in zip(
            rows, [(0.0, 1.5), (-0.1, -3.0), (0.2, 12.5), (None, None)], strict=True
        ):
            row["delta_accuracy_pts"], row["delta_p50_pct"] = deltas
    rng = np.random.default_rng(0)
    samples = {
        (row["artifact"], row["runtime"]): row["latency_ms"]["p50"] * rng.lognormal(0, 0.2, 500)
        for row in rows
        if row["status"] == "ok"
    }
    report = report_of(
        rows,
        environment={
            "cpu": "Test CPU",
            "cores": 2,
            "python": "3.11.7",
            "versions": {"tensorflow": "2.21.0", "onnxruntime": "1.20.0"},
        },
        recommended="model_int8.tflite",
        recommended_runtime="litert",
        baseline="old/report.json" if baseline else None,
    )
    return report.with_(latency_samples=samples)


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "baseline"])
def report(request) -> Report:
    """Shared by the tests of one variant (a frozen dataclass: changes make copies)."""
    return make_report(baseline=request.param)


# --- recommend ----------------------------------------------------------------------------------


def recommended(rows, within_pts=0.5) -> str | None:
    best = recommend(report_of(rows), within_pts)
    return best and best.artifact


def test_recommend_picks_fastest_within_half_a_point(report):
    assert recommend(report).key == ("model_int8.tflite", "litert")


def test_recommend_falls_back_to_reference_when_nothing_else_is_close():
    rows = [
        ok_row("model.keras", "keras", 0.8774, 0.95, 1),
        ok_row("model_float32.tflite", "litert", 0.8720, 0.05, 1),  # 0.54 pt lower
        ok_row("model_int8.tflite", "litert", 0.8500, 0.03, 1),
    ]
    assert recommended(rows) == "model.keras"


def test_recommend_counts_a_drop_of_exactly_half_a_point():
    rows = [
        ok_row("model.keras", "keras", 0.8774, 0.95, 1),
        ok_row("model_int8.tflite", "litert", 0.8724, 0.03, 1),
    ]
    assert recommended(rows) == "model_int8.tflite"


def test_recommend_ignores_failed_rows():
    fast_but_failed = failed_row("model.onnx", "onnxruntime", "boom")
    fast_but_failed |= {"accuracy": 0.88, "latency_ms": {"p50": 0.001}}
    rows = [ok_row("model.keras", "keras", 0.8774, 0.95, 1), fast_but_failed]
    assert recommended(rows) == "model.keras"
    assert recommended([ok_row("model.keras", "keras", 0.8774, 0.95, 1) | fast_but_failed]) is None


def test_recommend_accepts_more_accurate_rows_and_a_custom_budget():
    rows = [
        ok_row("model.keras", "keras", 0.8774, 0.95, 1),
        ok_row("model_float16.tflite", "litert", 0.8790, 0.04, 1),
        ok_row("model_int8.tflite", "litert", 0.8700, 0.03, 1),
    ]
    assert recommended(rows) == "model_float16.tflite"
    assert recommended(rows, within_pts=1.0) == "model_int8.tflite"


# --- terminal table -----------------------------------------------------------------------------


def render(report) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(report_table(report))
    return console.file.getvalue()


def table_line(text: str, row) -> int:
    """Index of the one table line showing `row` (the caption names artifacts too)."""
    pattern = re.compile(rf"^\s*\S?\s+{re.escape(row.artifact)}\s+{row.runtime}\s")
    hits = [i for i, line in enumerate(text.splitlines()) if pattern.match(line)]
    assert len(hits) == 1, (row.artifact, text)
    return hits[0]


def test_table_is_deterministic_and_stars_only_the_recommended_row(report):
    text = render(report)
    assert text == render(report)
    lines = text.splitlines()
    for row in report.rows:
        starred = STAR in lines[table_line(text, row)]
        assert starred == (row.artifact == report.recommended), row.artifact


def test_table_sorts_by_p50_with_failed_rows_last_and_their_error(report):
    text = render(report)
    by_name = {row.artifact: row for row in report.rows}
    order = ["model_int8.tflite", "model_float32.tflite", "model.keras", "model.onnx"]
    positions = [table_line(text, by_name[name]) for name in order]
    assert positions == sorted(positions)
    assert "model.onnx: failed: onnxruntime: InvalidGraph | bad node" in text


def test_table_shows_error_text_literally(report):
    rows = list(report.rows)
    rows[3] = replace(rows[3], error="[bold]not markup[/] [ONNXRuntimeError]")
    assert "[bold]not markup[/] [ONNXRuntimeError]" in render(report.with_(rows=tuple(rows)))


def test_table_has_delta_columns_only_with_a_baseline(report):
    has_baseline = report.baseline is not None
    assert ("Δp50" in render(report)) == has_baseline
    assert ("+12.5" in render(report)) == has_baseline


def test_table_without_recommendation_has_no_star(report):
    assert STAR not in render(report.with_(recommended=None))


# --- files --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(report, tmp_path_factory) -> tuple[Path, list[Path]]:
    """The report folder, written once per variant (plotting takes most of a second)."""
    folder = tmp_path_factory.mktemp("reports")
    return folder, write_reports(report, folder)


def test_write_reports_writes_every_file_and_nothing_else(written):
    folder, paths = written
    names = {"report.json", "report.csv", "report.md", "report.html", *PLOTS}
    assert [p.name for p in paths][-1] == "report.html"
    assert {p.name for p in paths} == names
    assert all(p.parent == folder and p.stat().st_size > 0 for p in paths)
    assert {p.name for p in folder.iterdir()} == names  # no temporary files left behind


def test_report_json_round_trips(written, report):
    folder, _ = written
    assert Report.from_json(json.loads((folder / "report.json").read_text())) == report


def test_report_csv_has_one_row_per_artifact_with_p50(written, report):
    folder, _ = written
    with open(folder / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["artifact"] for r in rows] == [r.artifact for r in report.rows]
    for parsed, row in zip(rows, report.rows, strict=True):
        expected = "" if row.latency_ms is None else str(row.p50)
        assert parsed["latency_p50_ms"] == expected
        assert parsed["status"] == row.status
        assert parsed["error"] == (row.error or "")
    assert rows[0]["acc_9"] == str(report.rows[0].per_class_accuracy[9])
    assert rows[3]["acc_0"] == ""
    assert ("delta_p50_pct" in rows[0]) == (report.baseline is not None)


def test_report_md_names_every_artifact_and_failure(written, report):
    folder, _ = written
    text = (folder / "report.md").read_text()
    assert all(row.artifact in text for row in report.rows)
    assert "| ★ | model_int8.tflite |" in text
    assert "- `model.onnx`: failed: onnxruntime: InvalidGraph | bad node" in text


def test_plots_are_png(written):
    folder, _ = written
    for name in PLOTS:
        assert (folder / name).read_bytes().startswith(PNG_SIGNATURE), name


def test_report_html_is_self_contained(written, report):
    folder, _ = written
    text = (folder / "report.html").read_text()
    assert text.count('src="data:image/png;base64,') == len(PLOTS)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert all(row.artifact in text for row in report.rows)
    assert "InvalidGraph | bad node" in text and "Test CPU" in text and "2.21.0" in text


def test_write_reports_with_only_failed_rows(report, tmp_path):
    failed = report_of([failed_row("model.keras", "keras", "boom")])
    paths = write_reports(failed, tmp_path)
    assert len(paths) == 8
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in paths if p.suffix == ".png")


def test_import_loads_no_runtime_and_no_matplotlib():
    code = (
        "import sys, toolkit.report; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'onnxruntime', 'matplotlib') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_measured_row_carries_flipped_indices_and_latency_quantiles():
    from toolkit.evaluate import _measured_row
    from toolkit.results import Row

    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    outputs = np.array([[0.4, 0.6], [0.2, 0.8], [0.6, 0.4], [0.55, 0.45]], np.float32)
    result = {
        "outputs": outputs,
        "latencies_ns": np.arange(1, 101) * 1000,  # 1 µs ... 100 µs
        "throughput_ips": 1.0,
        "load_ms": 1.0,
        "peak_rss_mb": 1.0,
        "extras": {},
    }
    base = Row("m.tflite", "tflite", "float32", "litert", 1)
    row = _measured_row(base, result, reference, np.array([0, 1, 0, 0]), classes=2)
    assert row.flipped == 2 and row.flipped_indices == [0, 3]
    assert [flip["index"] for flip in row.top_flips] == [0, 3]  # reference 0.9, then 0.7
    assert row.latency_quantiles_ms["p1"] == pytest.approx(0.00199)
    assert row.latency_quantiles_ms["p50"] == pytest.approx(0.0505)
    unlabelled = _measured_row(base, result, reference, None, classes=2)
    assert unlabelled.flipped_indices == [0, 3] and unlabelled.confusion_changes is None
