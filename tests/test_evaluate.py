"""compare: isolation of runtimes, reports, the accuracy and latency gates."""

import json
import os
import shutil
import signal
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.comparing.executors.local import measure_isolated
from toolkit.comparing.judging import apply_baseline, gate_failures
from toolkit.comparing.measurement import Job
from toolkit.comparing.measurement import MeasureSettings as MeasureConfig
from toolkit.comparing.worker import time_calls
from toolkit.reporting import PLOTS
from toolkit.results import Report
from toolkit.runners.litert import LiteRTRunner

runner = CliRunner()
QUICK = ["--runs", "20", "--max-seconds", "0.1"]  # latency figures are not what is tested here
# The first 1,000 test images, those export validated each file on: every row's figures are
# exercised, at a tenth of the items (`make run` compares all 10,000).
ITEMS = ["--limit", "1000"]


def crashing_worker(connection, *args):
    os.kill(os.getpid(), signal.SIGSEGV)


def hanging_worker(connection, *args):
    time.sleep(600)


def failing_worker(connection, *args):
    connection.send(("error", "runtime said no"))


@pytest.mark.parametrize(
    ("worker", "timeout", "reason"),
    [
        (crashing_worker, 60, "worker crashed (SIGSEGV)"),
        (hanging_worker, 2, "timed out after 2 s"),
        (failing_worker, 60, "runtime said no"),
    ],
)
def test_a_failing_runtime_becomes_a_failed_row(tmp_path, worker, timeout, reason):
    config = MeasureConfig(timeout_seconds=timeout)
    job = Job("x", "", LiteRTRunner.runtime, config)
    status, result = measure_isolated(
        job, tmp_path / "x", np.zeros((1, 28, 28), np.uint8), worker=worker
    )
    assert (status, result) == ("error", reason)


def test_time_calls_stops_at_runs_or_deadline():
    assert len(time_calls(lambda: None, runs=30, max_seconds=10, warmup=1)) == 30
    slow = time_calls(lambda: time.sleep(0.02), runs=1000, max_seconds=0.05, warmup=0)
    assert 1 <= len(slow) < 10


def _row(name, accuracy, p50=1.0, status="ok", runtime="litert"):
    return {
        "artifact": name,
        "format": "tflite",
        "variant": "float32",
        "runtime": runtime,
        "size_bytes": 1,
        "status": status,
        "accuracy": accuracy,
        "latency_ms": {"p50": p50},
        "error": None if status == "ok" else "boom",
    }


def _report(*rows) -> Report:
    return Report.from_json(
        {
            "threads": 1,
            "reference": "model.keras",
            "created": "",
            "environment": {},
            "class_names": [],
            "test_images": 0,
            "settings": {},
            "rows": list(rows),
        }
    )


def test_gates_pass_and_fail():
    rows = [_row("model.keras", 0.88), _row("a.tflite", 0.875), _row("b.onnx", 0.86)]
    report = _report(*rows)
    assert gate_failures(report, None, None) == []
    assert gate_failures(report, 3.0, None) == []
    failures = gate_failures(report, 1.0, None)
    assert len(failures) == 1 and failures[0].startswith("b.onnx: accuracy 86.00% is 2.00 pt")
    report = _report(*rows, _row("c.tflite", None, status="failed"))
    assert any(
        f.startswith("c.tflite: could not be measured") for f in gate_failures(report, 3.0, None)
    )
    report = _report(*rows, _row("c.tflite", None, status="unsupported"))
    assert gate_failures(report, 3.0, None) == []  # a runtime that cannot run it is no failure


def test_baseline_deltas_and_latency_gate_match_artifact_and_runtime():
    baseline = _report(
        _row("model.keras", 0.88, p50=1.0),
        _row("a.tflite", 0.87, p50=0.010),
        _row("a.tflite", 0.87, p50=0.001, runtime="openvino"),
    )
    report = _report(_row("model.keras", 0.88, p50=1.05), _row("a.tflite", 0.875, p50=0.015))
    report = apply_baseline(report, baseline, "old.json")
    a = report.rows[1]
    assert a.delta_accuracy_pts == pytest.approx(0.5)
    assert a.delta_p50_pct == pytest.approx(50.0)  # against litert's 0.010, not openvino's
    assert gate_failures(report, None, 60.0) == []
    failures = gate_failures(report, None, 10.0)
    assert [f.split(":")[0] for f in failures] == ["a.tflite"]


@pytest.fixture(scope="module")
def compared_dir(exported_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "out"
    shutil.copytree(exported_dir, out)
    result = runner.invoke(
        app, ["compare", "--out", str(out), *QUICK, *ITEMS, "--max-accuracy-drop", "5"]
    )
    assert result.exit_code == 0, result.output
    return out


def test_every_measured_row_says_whether_it_holds_its_validated_tolerance(compared_dir):
    """Export validates a file in one runtime; compare judges every row of it by the same
    comparator against the tolerance the manifest records (null for the reference)."""
    report = json.loads((compared_dir / "report" / "report.json").read_text())
    manifest = json.loads((compared_dir / "manifest.json").read_text())
    validated = {a["name"] for a in manifest["artifacts"] if a["validation"].get("tolerance")}
    judged = 0
    for row in report["rows"]:
        verdict = row["within_tolerance"]
        if row["artifact"] == "model.keras" or row["status"] != "ok":
            assert verdict is None, row
        elif row["artifact"] in validated:
            assert verdict in (True, False) and (row["tolerance_misses"] is None) == verdict
            judged += 1
    assert judged >= len(validated) - 1  # every validated file but the reference, at least once
    rows = {(r["artifact"], r["runtime"]): r for r in report["rows"]}
    assert rows[("model_float32.tflite", "litert")]["within_tolerance"] is True


def test_tolerance_verdict_is_the_validators_per_runtime():
    """The AVX2 case of issue 26 by hand: int8 fine in LiteRT (identical outputs: a null SNR),
    12.9 dB in OpenVINO against the 20 dB it was validated to."""
    from tests.test_report import ok_row, report_of
    from toolkit.comparing.judging import recommend, with_tolerances
    from toolkit.store import Artifact, Manifest

    rows = [ok_row("model.keras", "keras", 0.9, 1.0, 1)]
    rows += [ok_row("m.tflite", runtime, 0.9, p50, 1) for runtime, p50 in [("litert", 0.1)]]
    rows += [ok_row("m.tflite", "openvino", 0.9, 0.05, 1)]
    for row, snr in zip(rows[1:], [None, 12.9], strict=True):
        row.update(agreement=None, snr_db=snr, max_abs_diff=0.0 if snr is None else 0.3)
    tolerance = {"min_agreement": 0.97, "min_snr_db": 20.0}
    artifact = Artifact("m.tflite", "tflite", "int8", "m.tflite", "litert", "0" * 64, 1)
    artifact.validation = {"tolerance": tolerance}
    report = with_tolerances(report_of(rows), Manifest([artifact], [], "0" * 64, {}))
    verdicts = [(r.within_tolerance, r.tolerance_misses) for r in report.rows]
    assert verdicts == [(None, None), (True, None), (False, ["snr_db 12.9 < 20"])]
    assert recommend(report).key == ("m.tflite", "litert")  # the faster row is outside
    assert gate_failures(report, None, None) == []  # only with the option
    assert gate_failures(report, None, None, outside_tolerance=True) == [
        "m.tflite [openvino]: outside the tolerance it was validated to (snr_db 12.9 < 20)"
    ]


def test_a_row_outside_its_tolerance_is_marked_never_recommended_and_can_fail_the_gate(
    exported_dir, tmp_path
):
    """A tolerance int8 cannot meet (recorded in the manifest as if export had validated to it):
    the row is flagged in report.json, the table, report.md and the page, the recommendation
    skips it, and --fail-outside-tolerance fails the gate, again when re-rendered."""
    out = tmp_path / "out"
    shutil.copytree(exported_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        if artifact["name"] == "model_int8.tflite":
            artifact["validation"]["tolerance"] = {"max_abs_diff": 1e-9}
    (out / "manifest.json").write_text(json.dumps(manifest))
    args = ["--out", str(out), *QUICK, "--runtime", "litert", "--limit", "500"]
    result = runner.invoke(app, ["compare", *args, "--fail-outside-tolerance", "--no-figures"])
    assert result.exit_code == 1, result.output
    assert "gate: model_int8.tflite: outside the tolerance it was validated to" in result.output
    assert "⚠ model_int8.tflite: outside the tolerance" in result.output
    report = json.loads((out / "report" / "report.json").read_text())
    rows = {(r["artifact"], r["runtime"]): r for r in report["rows"]}
    flagged = rows[("model_int8.tflite", "litert")]
    assert flagged["within_tolerance"] is False
    assert flagged["tolerance_misses"][0].startswith("max_abs_diff")
    assert rows[("model_float32.tflite", "litert")]["within_tolerance"] is True
    assert report["recommended"] != "model_int8.tflite"
    assert report["gate"]["fail_outside_tolerance"] is True
    assert '<tr class="outside">' in (out / "report" / "report.html").read_text()
    assert "Outside the tolerance" in (out / "report" / "report.md").read_text()
    result = runner.invoke(app, ["report", "--out", str(out)])  # the stored gate, re-checked
    assert result.exit_code == 1 and "outside the tolerance" in result.output


def test_compare_writes_parseable_reports(compared_dir):
    report = json.loads((compared_dir / "report" / "report.json").read_text())
    assert report["reference"] == "model.keras" and report["threads"] == 1
    assert {"cpu", "cores", "versions"} <= set(report["environment"])
    manifest = json.loads((compared_dir / "manifest.json").read_text())
    native = {(a["name"], a["runtime"]) for a in manifest["artifacts"] if a["runtime"]}
    rows = {(r["artifact"], r["runtime"]): r for r in report["rows"]}
    assert native <= set(rows)  # every artifact in its own runtime...
    # ...and every .tflite/.onnx file in every other runtime that opens it.
    assert ("model_int8.tflite", "tflite-micro") in rows and ("model_int8.onnx", "openvino") in rows
    unsupported = {key for key, row in rows.items() if row["status"] == "unsupported"}
    assert unsupported == {
        ("model_float16.tflite", "tflite-micro"),
        ("model_dynamic_int8.tflite", "tflite-micro"),
    }
    assert all(
        "float16" in rows[key]["error"] or "dynamic" in rows[key]["error"] for key in unsupported
    )
    report["rows"] = [r for r in report["rows"] if r["status"] != "unsupported"]
    # An Ethos-U file runs on no CPU here: its row is Vela's estimate, named after its
    # accelerator, and only those rows may be "estimated"; every other row is measured, "ok".
    estimated = [r for r in report["rows"] if r["status"] == "estimated"]
    assert all(r["runtime"].startswith("ethos-u") for r in estimated), estimated
    report["rows"] = [r for r in report["rows"] if r["status"] != "estimated"]
    keys = {
        "artifact",
        "format",
        "variant",
        "runtime",
        "accuracy",
        "agreement",
        "flipped",
        "max_abs_diff",
        "per_class_accuracy",
        "latency_ms",
        "throughput_ips",
        "load_ms",
        "size_bytes",
        "peak_rss_mb",
    }
    for row in report["rows"]:
        assert row["status"] == "ok", row
        assert keys <= set(row)
        if row["runtime"] == "tflite-micro":
            assert row["extras"]["arena_bytes"] > 0 and row["extras"]["flash_bytes"] > 0
        if row["artifact"].endswith(".tflite"):
            assert "whole_graph" in row["compatibility"]["gpu_delegate"]
        assert set(row["latency_ms"]) == {"p50", "p90", "p99", "mean", "std", "min"}
        assert 0 < row["latency_ms"]["min"] <= row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert row["throughput_ips"] > 0 and row["peak_rss_mb"] > 0
        assert len(row["per_class_accuracy"]) == 10
    reference = next(r for r in report["rows"] if r["artifact"] == "model.keras")
    assert reference["agreement"] == 1.0 and reference["flipped"] == 0
    assert report["recommended"] in {r["artifact"] for r in report["rows"]}
    for name in ("report.csv", "report.md", "report.html", "accuracy_vs_latency.png"):
        assert (compared_dir / "report" / name).stat().st_size > 0
    for row in report["rows"]:  # what flipped: indices for tools, a gallery for people
        assert len(row["flipped_indices"]) == min(row["flipped"], 1000)
        gallery = compared_dir / "report" / "flips" / f"{row['artifact']}.{row['runtime']}.png"
        gallery = gallery if gallery.exists() else gallery.with_name(f"{row['artifact']}.png")
        assert gallery.exists() == (row["flipped"] > 0), row["artifact"]


def test_accuracy_gate_fails_the_command_naming_the_offender(compared_dir, tmp_path, dataset):
    """An untrained model's TFLite file in place of the int8 one must trip the gate."""
    import keras

    from toolkit.exporters.base import ExportContext
    from toolkit.exporters.tflite import export_tflite
    from toolkit.model import build_mlp

    out = tmp_path / "out"
    shutil.copytree(compared_dir, out)
    keras.utils.set_random_seed(1)
    untrained = build_mlp()
    context = ExportContext(
        untrained, out / "model.keras", np.zeros((1, 28, 28), np.float32), 17, tmp_path / "build"
    )
    export_tflite(untrained, out / "model_float16.tflite", context)
    args = ["compare", "--out", str(out), *QUICK, *ITEMS, "--max-accuracy-drop", "5"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 4 and "model_float16.tflite: changed" in refused.output
    baseline = str(compared_dir / "report" / "report.json")
    # LiteRT alone: the gate's logic is what is tested here, not every runtime again. A gate's
    # run needs no figures: the page gets the tables, `toolkit report` draws the plots later.
    only_litert = ["--runtime", "litert", "--no-verify", "--baseline", baseline, "--no-figures"]
    result = runner.invoke(app, [*args, *only_litert])
    assert result.exit_code == 1, result.output
    assert "model_float16.tflite: accuracy" in result.output
    assert "model_int8.tflite: accuracy" not in result.output
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["gate"]["failures"]
    assert all("delta_p50_pct" in row for row in report["rows"])
    assert any(row["flipped"] for row in report["rows"])  # a gallery was due, and not drawn
    # Only export's per-layer plot is there, copied as every report does.
    pngs = {p.relative_to(out / "report").as_posix() for p in (out / "report").rglob("*.png")}
    assert pngs == {"quantization/model_int8.tflite.png"}
    assert (out / "report" / "report.html").read_text().count("data:image/png") == 1
    redrawn = runner.invoke(app, ["report", "--out", str(out)])
    assert redrawn.exit_code == 1 and "model_float16.tflite: accuracy" in redrawn.output
    assert {p.name for p in (out / "report").glob("*.png")} == set(PLOTS)


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '{"rows": [{"artifact": "a", "status": "ok"}]}',
        '{"rows": [{"artifact": "a", "status": "ok", "accuracy": 0.9, "latency_ms": {"p50": 0}}]}',
    ],
)
def test_an_unusable_baseline_is_refused_before_measuring(exported_dir, tmp_path, content):
    baseline = tmp_path / "report.json"
    baseline.write_text(content)
    result = runner.invoke(
        app, ["compare", "--out", str(exported_dir), "--baseline", str(baseline)]
    )
    assert result.exit_code == 2 and "not a usable toolkit report.json" in result.output


def test_a_manifest_path_leading_outside_the_folder_is_refused(exported_dir, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(exported_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"][1]["path"] = "../../etc/passwd"
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["verify", "--out", str(out)])
    assert result.exit_code == 4 and "leads outside" in result.output


def test_baseline_mismatches_name_what_differs():
    from toolkit.comparing.judging import baseline_mismatches

    now = _report().with_(environment={"cpu": "A"}, settings={"batch_size": 256})
    assert baseline_mismatches(now, now) == []
    old = _report().with_(threads=None)  # an old report without the keys
    assert baseline_mismatches(now, old) == []
    then = now.with_(threads=4, environment={"cpu": "B"})
    assert baseline_mismatches(now, then) == ["threads 4 then, 1 now", "cpu 'B' then, 'A' now"]


def test_workers_import_beside_each_other_but_never_beside_a_load_or_a_timing_loop(
    tmp_path, monkeypatch
):
    """Compare's pacing, from what four workers of a logging runtime record: the first ones
    import together before anything loads; no import runs beside a load or a timing loop, and
    no two timing loops overlap."""
    from tests.paced import paced_worker
    from toolkit.comparing.data import EvalData
    from toolkit.comparing.executors.local import AHEAD, LocalExecutor
    from toolkit.data import Preprocessing

    log = tmp_path / "paced.log"
    monkeypatch.setenv("PACED_LOG", str(log))
    config = MeasureConfig(runs=20, max_seconds=0.05, warmup=1, timeout_seconds=60)
    jobs = []
    for i in range(4):
        (tmp_path / f"m{i}.paced").write_bytes(b"model")
        jobs.append(Job(f"m{i}.paced", "", "paced", config))
    data = EvalData.write(np.zeros((8, 2), np.float32), tmp_path, Preprocessing(1.0), (2,))
    results = LocalExecutor(paced_worker).run(jobs, tmp_path, data, lambda *result: None)
    assert [status for status, _ in results] == ["ok"] * 4

    spans: dict[int, dict[str, list[int]]] = {}
    for line in log.read_text().splitlines():
        pid, phase, edge, ns = line.split()
        spans.setdefault(int(pid), {}).setdefault(phase, []).append(int(ns))
    workers = sorted(spans.values(), key=lambda w: w["load"][0])  # in the order they measured
    assert len(workers) == 4 and all(len(w) == 3 for w in workers)

    def overlap(a, b):
        return a[0] < b[1] and b[0] < a[1]

    first = workers[0]
    for ahead in workers[1 : 1 + AHEAD]:  # those started with the first imported before it loaded
        assert ahead["import"][1] <= first["load"][0]
    for worker in workers:
        for other in workers:
            if other is not worker:
                assert not overlap(worker["import"], other["load"])
                assert not overlap(worker["import"], other["time"])
                assert not overlap(worker["time"], other["time"])
