"""report.py on a hand-built compare result: recommendation, table, files and plots (no TF)."""

import csv
import importlib
import io
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import matplotlib.text
import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.comparing.judging import apply_baseline, gate_failures, recommend
from toolkit.errors import ExitCode, ToolkitError
from toolkit.figures import png_bytes, save_figure
from toolkit.metrics import flip_details
from toolkit.reporting import (
    PLOTS,
    report_csv,
    report_markdown,
    report_table,
    three_digits,
    write_reports,
)
from toolkit.reporting.cells import STAR
from toolkit.reporting.cells import columns as _columns
from toolkit.reporting.galleries import flip_gallery_figure
from toolkit.reporting.plots import (
    accuracy_vs_latency_figure,
    class_selection,
    latency_distribution_figure,
    per_class_accuracy_figure,
    size_figure,
)
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
        "latency_quantiles_ms": {
            "p1": p50 * 0.8,
            "p25": p50 * 0.95,
            "p50": p50,
            "p75": p50 * 1.1,
            "p99": p50 * 2,
        },
        "throughput_ips": 1000 / p50,
        "load_ms": 3.2,
        "size_bytes": size,
        "peak_rss_mb": 180.5,
    }


def failed_row(artifact: str, runtime: str, error: str) -> dict:
    row = ok_row(artifact, runtime, 0.0, 1.0, 0)
    metrics = ["accuracy", "agreement", "flipped", "max_abs_diff", "per_class_accuracy"]
    metrics += [
        "latency_ms",
        "latency_quantiles_ms",
        "throughput_ips",
        "load_ms",
        "size_bytes",
        "peak_rss_mb",
    ]
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
    return report_of(
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


def test_report_csv_ends_with_within_tolerance_as_report_json_spells_it():
    """A new column goes last, so no script's column index moves; true/false/empty as
    report.json's true/false/null."""
    rows = [ok_row("model.keras", "keras", 0.9, 1.0, 1)]
    rows += [ok_row(f"m{i}.tflite", "litert", 0.9, 0.1, 1) for i in range(2)]
    rows[1]["within_tolerance"], rows[2]["within_tolerance"] = True, False
    rows[2]["tolerance_misses"] = ["snr_db 12.9 < 20"]
    text = report_csv(report_of(rows))
    header = text.splitlines()[0].split(",")
    assert header[-11:] == [*(f"acc_{i}" for i in range(10)), "within_tolerance"]
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [r["within_tolerance"] for r in parsed] == ["", "true", "false"]


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
        "import sys, toolkit.reporting; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'onnxruntime', 'matplotlib') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- units --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p50s_ms", "unit", "cells"),
    [
        ([0.000999, 0.0005], "ns", ["999", "500"]),  # below a microsecond
        ([0.001, 0.5], "µs", ["1.00", "500"]),  # exactly a microsecond
        ([0.00134, 0.0199], "µs", ["1.34", "19.9"]),
        ([0.999, 2.5], "µs", ["999", "2,500"]),  # just under a millisecond
        ([1.0, 950.0], "ms", ["1.00", "950"]),
        ([13.44, 1234.0], "ms", ["13.4", "1,234"]),
    ],
)
def test_latency_column_has_one_unit_chosen_for_its_range(p50s_ms, unit, cells):
    rows = [ok_row(f"m{i}.tflite", "litert", 0.8, p50, 1) for i, p50 in enumerate(p50s_ms)]
    report = report_of(rows)
    text = render(report)
    assert f"p50 {unit}" in text
    for row, cell in zip(report.rows, cells, strict=True):
        assert re.search(rf"\s{re.escape(cell)}\s", text.splitlines()[table_line(text, row)])
    assert f"| p50 {unit} |" in report_markdown(report)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1.34, "1.34"), (13.44, "13.4"), (134.4, "134"), (99.96, "100"), (999.6, "1,000")],
)
def test_three_significant_digits(value, text):
    assert three_digits(value) == text


# --- a table that fits the terminal -------------------------------------------------------------


def realistic_report() -> Report:
    """Eleven rows with the longest real names, microsecond and millisecond latencies, a baseline
    and a failure whose reason is long."""
    names = [
        ("model.keras", "keras", 0.95),
        ("savedmodel", "tensorflow", 0.138),
        ("model_float32.tflite", "litert", 0.00497),
        ("model_float16.tflite", "litert", 0.0049),
        ("model_dynamic_int8.tflite", "litert", 0.00227),
        ("model_int8.tflite", "litert", 0.00198),
        ("model_float32.onnx", "onnxruntime", 0.00851),
        ("model_int8.onnx", "onnxruntime", 0.00783),
        ("model_float32.tflite", "tflite_micro", 0.0311),
        ("model_int8.tflite", "tflite_micro", 0.0122),
    ]
    rows = [
        ok_row(name, runtime, 0.8774 - 0.0001 * i, p50, 1_220_000 // (i + 1))
        | {"delta_accuracy_pts": -0.01 * i, "delta_p50_pct": 1.5 * i - 3}
        for i, (name, runtime, p50) in enumerate(names)
    ]
    rows.append(failed_row("model_dynamic_int8.onnx", "onnxruntime", "x" * 150))
    return report_of(rows, baseline="old/report.json", recommended="model_int8.tflite")


@pytest.mark.parametrize("width", [80, 100, 160])
def test_table_shows_every_figure_whole_at_any_width(width):
    report = realistic_report()
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(report_table(report, width=width))
    text = console.file.getvalue()
    assert max(map(len, text.splitlines())) <= width
    header = next(line for line in text.splitlines() if "artifact" in line)
    columns = _columns(report)
    shown = [
        c for c in columns if c.header and re.search(rf"(^|\s){re.escape(c.header)}(\s|$)", header)
    ]
    assert {"artifact", "runtime", "acc %", "p50 µs"} <= {c.header for c in shown}
    for row in report.rows:
        line = text.splitlines()[table_line(text, row)]
        cells = [c.cell(row) for c in shown]
        assert all(f" {cell}" in line for cell in cells if cell), (cells, line)
    hidden = [c.header for c in columns if c not in shown and c.header]
    if width >= 160:
        assert hidden == [] and "hidden" not in text
    else:
        assert hidden, text
        note = next(line for line in text.splitlines() if "hidden at this width" in line)
        assert all(name in text[text.index(note) :] for name in hidden)
    assert "…" not in text


# --- what flipped -------------------------------------------------------------------------------


def test_flip_details_on_a_hand_computed_case():
    reference = np.array([[0.9, 0.1, 0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.4, 0]])
    outputs = np.array([[0.4, 0.6, 0], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.6, 0.4, 0]])
    details = flip_details(outputs, reference, np.array([0, 1, 2, 1]))
    assert details["flipped_indices"] == [0, 2]
    assert [
        (f["index"], f["label"], f["reference_class"], f["class"]) for f in details["top_flips"]
    ] == [
        (0, 0, 0, 1),
        (2, 2, 2, 0),
    ]
    assert details["top_flips"][0]["reference_probability"] == 0.9
    assert details["top_flips"][1]["probability"] == 0.5
    cells = [
        (c["true"], c["predicted"], c["reference"], c["artifact"])
        for c in details["confusion_changes"]
    ]
    assert cells == [(0, 0, 1, 0), (0, 1, 0, 1), (2, 0, 0, 1), (2, 2, 1, 0)]
    assert flip_details(outputs, reference, None)["confusion_changes"] is None


def test_flip_details_keeps_the_first_thousand_indices_and_the_surest_flips():
    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.ones(5), 3000)
    outputs = np.roll(reference, 1, axis=1)  # every top-1 class moves
    details = flip_details(outputs, reference, None)
    assert details["flipped_indices"] == list(range(1000))
    confidence = [f["reference_probability"] for f in details["top_flips"]]
    assert len(confidence) == 32 and confidence == sorted(confidence, reverse=True)
    assert confidence[0] == reference.max()


def with_flips(report: Report, artifact: str = "model_int8.tflite") -> Report:
    """`artifact`'s row with the flips of a synthetic case: 4 inputs of the first 200 flip."""
    rng = np.random.default_rng(1)
    reference = rng.dirichlet(np.ones(10), 200)
    outputs = reference.copy()
    outputs[[3, 7, 50, 120]] = np.roll(reference[[3, 7, 50, 120]], 1, axis=1)
    details = flip_details(outputs, reference, reference.argmax(axis=1))
    rows = tuple(
        replace(row, flipped=4, **details) if row.artifact == artifact else row
        for row in report.rows
    )
    return report.with_(rows=rows)


def test_galleries_are_written_for_rows_with_flips_only(tmp_path):
    report = with_flips(make_report(baseline=False))
    inputs = np.random.default_rng(0).integers(0, 256, (200, 28, 28), np.uint8)
    paths = write_reports(report, tmp_path / "report", inputs)
    galleries = sorted((tmp_path / "report" / "flips").iterdir())
    assert [p.name for p in galleries] == ["model_int8.tflite.png"]
    assert galleries[0] in paths and galleries[0].read_bytes().startswith(PNG_SIGNATURE)
    page = (tmp_path / "report" / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(PLOTS) + 1
    assert "model_int8.tflite: 4 flipped of 10,000 (0.04%)" in page
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "![model_int8.tflite flips](flips/model_int8.tflite.png)" in markdown
    stored = json.loads((tmp_path / "report" / "report.json").read_text())
    int8 = next(row for row in stored["rows"] if row["artifact"] == "model_int8.tflite")
    assert int8["flipped_indices"] == [3, 7, 50, 120]


def test_no_gallery_without_flips(tmp_path):
    inputs = np.zeros((10, 28, 28), np.uint8)
    report = make_report(baseline=False)
    unchanged = tuple(replace(row, flipped=0, top_flips=[]) for row in report.rows)
    write_reports(report.with_(rows=unchanged), tmp_path / "report", inputs)
    assert not (tmp_path / "report" / "flips").exists()
    assert (
        "No artifact changed a single top-1 prediction"
        in (tmp_path / "report" / "report.html").read_text()
    )


@pytest.mark.parametrize(
    "shape_and_type",
    [((640,), np.float32), ((49, 10), np.float32), ((32, 32, 3), np.uint8)]
    + [((32, 32, 3), np.float32), ((28, 28, 1), np.float32), ((3, 8, 8), np.float32)],
)
def test_galleries_draw_any_input_shape(tmp_path, shape_and_type):
    shape, dtype = shape_and_type
    inputs = np.random.default_rng(0).uniform(-3, 300, (200, *shape)).astype(dtype)
    report = with_flips(make_report(baseline=False))
    row = next(row for row in report.rows if row.top_flips)
    path = save_figure(flip_gallery_figure(report, row, inputs), tmp_path / "gallery.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_a_thousand_classes_show_the_worst_twenty(tmp_path):
    classes = [f"class {i}" for i in range(1000)]
    rows = [ok_row("model.keras", "keras", 0.8, 1.0, 1), ok_row("m.tflite", "litert", 0.8, 0.1, 1)]
    rows[0]["per_class_accuracy"] = [0.8] * 1000
    rows[1]["per_class_accuracy"] = [0.8] * 1000
    for worse in (5, 500, 999):
        rows[1]["per_class_accuracy"][worse] = 0.3
    report = report_of(rows, class_names=classes)
    selected = class_selection(report)
    assert len(selected) == 20 and {5, 500, 999} <= set(selected)
    assert save_figure(per_class_accuracy_figure(report), tmp_path / "c.png").stat().st_size > 0
    assert class_selection(make_report(baseline=False)) == list(range(10))


# --- what changed -------------------------------------------------------------------------------


def test_baseline_marks_new_and_gone_rows_and_the_gate_in_the_page(tmp_path):
    then = report_of(
        [
            ok_row("model.keras", "keras", 0.8774, 0.95, 1),
            ok_row("model_int8.tflite", "litert", 0.8774, 0.020, 1),
            ok_row("model.onnx", "onnxruntime", 0.8774, 0.02, 1),
        ]
    )
    now = make_report(baseline=False)
    report = apply_baseline(now, then, "old/report.json")
    assert report.baseline_new == [["model_float32.tflite", "litert"]]
    assert [row["artifact"] for row in report.baseline_gone] == []  # model.onnx is still a row
    report = apply_baseline(now.with_(rows=now.rows[:3]), then, "old/report.json")
    assert [row["artifact"] for row in report.baseline_gone] == ["model.onnx"]
    again = apply_baseline(make_report(baseline=True), then, "other/report.json")
    assert [row.delta_p50_pct is None for row in again.rows] == [False, True, False, True]
    failures = gate_failures(report, None, 20.0)
    report = report.with_(
        gate={"max_accuracy_drop": None, "max_latency_regression": 20.0, "failures": failures}
    )
    write_reports(report, tmp_path / "report")
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Gate failed" in page and "p50 latency grew 55.0%" in page
    assert "**Gate failed** (1):" in (tmp_path / "report" / "report.md").read_text()
    assert '<td class="num worse regression" data-v="55.' in page
    assert 'model_float32.tflite<span class="badge">new</span>' in page
    assert "In the baseline, gone now" in page and "1 row new, 1 gone" in page


# --- the report folder as a unit ----------------------------------------------------------------


def test_report_json_is_strict_json_with_non_finite_figures(tmp_path):
    report = make_report(baseline=False)
    rows = (replace(report.rows[0], snr_db=float("inf"), rmse=float("nan")), *report.rows[1:])
    write_reports(report.with_(rows=rows), tmp_path / "report")

    def refuse(constant):
        raise ValueError(constant)

    data = json.loads((tmp_path / "report" / "report.json").read_text(), parse_constant=refuse)
    assert data["rows"][0]["snr_db"] is None and data["rows"][0]["rmse"] is None


def test_a_failed_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    report_module = importlib.import_module("toolkit.reporting.html")
    folder = tmp_path / "report"
    write_reports(make_report(baseline=False), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def disk_full(*args):
        raise ToolkitError(f"{folder}/report.html: cannot write: No space left", ExitCode.IO)

    monkeypatch.setattr(report_module, "report_html", disk_full)
    with pytest.raises(ToolkitError):
        write_reports(make_report(baseline=True), folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left


def test_toolkit_report_reproduces_the_files_from_report_json(tmp_path):
    out = tmp_path / "out"
    report = with_flips(make_report(baseline=True))
    inputs = np.random.default_rng(0).integers(0, 256, (200, 28, 28), np.uint8)
    write_reports(report, out / "report", inputs)
    written = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for path in (out / "report").glob("*.*"):
        if path.name != "report.json":
            path.unlink()  # flips/ stays: galleries cannot be drawn again without the inputs

    result = CliRunner().invoke(app, ["report", "--out", str(out)])

    assert result.exit_code == 0, result.output
    again = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again.pop(Path(".toolkit.lock"))
    assert again.keys() == written.keys()
    assert [name for name in written if again[name] != written[name]] == []


def twice_as_fast_baseline(report: Report, path: Path) -> Path:
    """`report` with every measured row's p50 halved, written to `path`: against it, each
    row's latency grew 100 %."""
    faster = [
        replace(row, latency_ms={**row.latency_ms, "p50": row.p50 / 2}) if row.ok else row
        for row in report.rows
    ]
    path.write_text(json.dumps(report.with_(rows=tuple(faster)).to_json()))
    return path


def test_toolkit_report_with_another_baseline_recomputes_deltas_and_gate(tmp_path):
    out = tmp_path / "out"
    report = make_report(baseline=False).with_(
        gate={"max_accuracy_drop": None, "max_latency_regression": 10.0, "failures": []}
    )
    write_reports(report, out / "report")
    baseline = twice_as_fast_baseline(report, tmp_path / "old.json")

    result = CliRunner().invoke(app, ["report", "--out", str(out), "--baseline", str(baseline)])

    assert result.exit_code == 1, result.output
    assert "p50 latency grew 100.0%" in result.output
    stored = json.loads((out / "report" / "report.json").read_text())
    assert stored["baseline"] == str(baseline)
    assert stored["rows"][0]["delta_p50_pct"] == pytest.approx(100.0)


def test_toolkit_report_without_figures_rechecks_the_gate_and_keeps_the_galleries(tmp_path):
    out = tmp_path / "out"
    gate = {"max_accuracy_drop": None, "max_latency_regression": 10.0, "failures": []}
    report = with_flips(make_report(baseline=False)).with_(gate=gate)
    inputs = np.random.default_rng(0).integers(0, 256, (200, 28, 28), np.uint8)
    write_reports(report, out / "report", inputs)
    galleries = {p.name: p.read_bytes() for p in (out / "report" / "flips").iterdir()}
    assert galleries and all((out / "report" / name).is_file() for name in PLOTS)
    baseline = twice_as_fast_baseline(report, tmp_path / "old.json")

    args = ["report", "--out", str(out), "--baseline", str(baseline), "--no-figures"]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 1 and "p50 latency grew 100.0%" in result.output
    assert not any((out / "report" / name).exists() for name in PLOTS)
    kept = {p.name: p.read_bytes() for p in (out / "report" / "flips").iterdir()}
    assert kept == galleries
    page = (out / "report" / "report.html").read_text()
    assert page.count("data:image/png") == len(galleries)
    assert CliRunner().invoke(app, ["report", "--out", str(out)]).exit_code == 1
    assert all((out / "report" / name).is_file() for name in PLOTS)  # drawn again


def test_toolkit_report_without_a_compare_says_what_to_run(tmp_path):
    result = CliRunner().invoke(app, ["report", "--out", str(tmp_path)])
    assert result.exit_code == 4
    assert "run `toolkit compare --out" in result.output


def test_toolkit_report_refuses_a_locked_output(tmp_path, monkeypatch):
    import functools

    import toolkit.store

    write_reports(make_report(baseline=False), tmp_path / "report")
    before = (tmp_path / "report" / "report.html").read_bytes()
    short_wait = functools.partial(toolkit.store.OutputLock, wait_seconds=0.2)
    with toolkit.store.OutputLock(tmp_path):  # another command writing this folder
        monkeypatch.setattr(toolkit.store, "OutputLock", short_wait)
        result = CliRunner().invoke(app, ["report", "--out", str(tmp_path)])
    assert result.exit_code == 6, result.output
    assert "in use by another toolkit command" in result.output
    assert (tmp_path / "report" / "report.html").read_bytes() == before


def test_measured_row_carries_flipped_indices_and_latency_quantiles():
    from toolkit.comparing.measurement import Measurement
    from toolkit.comparing.scoring import measured_row as _measured_row
    from toolkit.results import Row

    reference = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    outputs = np.array([[0.4, 0.6], [0.2, 0.8], [0.6, 0.4], [0.55, 0.45]], np.float32)
    result = Measurement(
        outputs={"output": outputs},
        latencies_ns=np.arange(1, 101) * 1000,  # 1 µs ... 100 µs
        throughput_ips=1.0,
        load_ms=1.0,
        peak_rss_mb=1.0,
        extras={},
    )
    base = Row("m.tflite", "tflite", "float32", "litert", 1)
    heads = [{"name": "output", "kind": "classifier", "class_names": ["a", "b"]}]
    labels = {"output": np.array([0, 1, 0, 0])}
    row = _measured_row(base, result, {"output": reference}, labels, heads)
    assert row.flipped == 2 and row.flipped_indices == [0, 3]
    assert [flip["index"] for flip in row.top_flips] == [0, 3]  # reference 0.9, then 0.7
    assert row.latency_quantiles_ms["p1"] == pytest.approx(0.00199)
    assert row.latency_quantiles_ms["p50"] == pytest.approx(0.0505)
    unlabelled = _measured_row(base, result, {"output": reference}, {}, heads)
    assert unlabelled.flipped_indices == [0, 3] and unlabelled.confusion_changes is None


class AlternatingFigures:
    """A figure process stand-in that is idle every other time it is asked."""

    def __init__(self):
        self.asked, self.drawn = 0, []

    def idle(self) -> bool:
        self.asked += 1
        return self.asked % 2 == 1

    def draw(self, draw, *args, trim):
        self.drawn.append(draw(*args))

    def pngs(self) -> list[bytes]:
        return [png_bytes(fig, trim=False) for fig in self.drawn]


def test_report_figures_are_shared_with_the_figure_process_while_it_is_idle(tmp_path):
    report = with_flips(make_report(baseline=False))
    inputs = np.random.default_rng(0).integers(0, 256, (200, 28, 28), np.uint8)
    figures = AlternatingFigures()
    paths = write_reports(report, tmp_path / "report", inputs, figures)
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(figures.drawn) == 3 and len(pngs) == len(PLOTS) + 1  # 5 figures, every other
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in pngs)
    gallery = tmp_path / "report" / "flips" / "model_int8.tflite.png"
    assert gallery in pngs  # the first figure: the process's


MATH = r"$\undefinedmacro$"  # mathtext matplotlib cannot parse: drawn as is, or it raises


def test_names_with_dollar_signs_are_drawn_literally_in_every_report_figure():
    plain = with_flips(make_report(baseline=False))
    rows = tuple(replace(row, artifact=f"{MATH}{row.artifact}") for row in plain.rows)
    report = plain.with_(
        rows=rows,
        reference=rows[0].artifact,
        class_names=[f"{MATH} {name}" for name in CLASSES[:-1]] + ["$5 bill"],
    )
    flipped = next(row for row in report.rows if row.top_flips)
    inputs = np.random.default_rng(0).integers(0, 256, (200, 28, 28), np.uint8)
    figures = [
        accuracy_vs_latency_figure(report),
        latency_distribution_figure(report),
        size_figure(report.rows),
        per_class_accuracy_figure(report),
        flip_gallery_figure(report, flipped, inputs),
    ]
    for fig in figures:
        assert png_bytes(fig).startswith(PNG_SIGNATURE)  # drawn: tick labels exist now
        drawn = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        assert any(MATH.replace("$", r"\$") in text for text in drawn), drawn
