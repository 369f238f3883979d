"""`toolkit report` and `--baseline` on report.json and manifest files someone else wrote: the
schema refuses malformed ones naming the field, and no path read from a file leads outside --out,
through a link, or to a file too large to embed (issue 26)."""

import base64
import copy
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.test_report import failed_row, make_report, ok_row
from tests.test_robustness import assert_refused
from toolkit.cli import app
from toolkit.errors import ExitCode, ToolkitError
from toolkit.report_schema import load_report
from toolkit.reporting import write_reports
from toolkit.store import Artifact, Manifest

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64  # the page embeds the bytes; it never decodes them
FLIP = {
    "index": 0,
    "label": 1,
    "reference_class": 1,
    "reference_probability": 0.9,
    "class": 2,
    "probability": 0.6,
}


def valid_report() -> dict:
    """A report.json as compare writes it: a gallery, a per-layer record, a gate, a baseline."""
    data = make_report(baseline=True).to_json()
    int8 = data["rows"][2]
    int8["top_flips"] = [FLIP]
    int8["confusion_changes"] = [{"true": 1, "predicted": 2, "reference": 0, "artifact": 1}]
    int8["quantization"] = {"per_layer": "quantization/model_int8.tflite.json"}
    int8["compatibility"] = {"gpu_delegate": {"whole_graph": True, "unsupported_ops": []}}
    data["gate"] = {"max_accuracy_drop": 1.0, "max_latency_regression": None, "failures": []}
    data["baseline_gone"] = [{"artifact": "a.onnx", "runtime": "onnxruntime", "accuracy": 0.8}]
    data["baseline_gone"][0]["p50"] = 1.0
    return data


def _set(path: str, value):
    """A change that sets the field at `path` ("rows.2.latency_ms"; "-" deletes it)."""

    def change(data):
        *parents, last = path.split(".")
        for key in parents:
            data = data[int(key)] if isinstance(data, list) else data[key]
        if value == "-":
            del data[int(last) if isinstance(data, list) else last]
        else:
            data[int(last) if isinstance(data, list) else last] = value

    return change


# (id, change to a valid report.json, words the one error line must say)
MALFORMED = [
    ("size-overflows-float", _set("rows.1.size_bytes", 10**400), "rows[1].size_bytes"),
    ("size-negative", _set("rows.1.size_bytes", -1), "rows[1].size_bytes"),
    ("no-p99", _set("rows.1.latency_ms.p99", "-"), "rows[1].latency_ms has no 'p99'"),
    ("no-p1-quantile", _set("rows.2.latency_quantiles_ms.p1", "-"), "latency_quantiles_ms"),
    ("p50-not-number", _set("rows.2.latency_ms.p50", "fast"), "rows[2]"),
    ("gate-string", _set("gate.max_accuracy_drop", "1"), "max_accuracy_drop"),
    ("gate-negative", _set("gate.max_latency_regression", -5), "max_latency_regression"),
    ("failures-not-list", _set("gate.failures", "none"), "failures"),
    ("per-class-short", _set("rows.1.per_class_accuracy", [0.5, 0.5, 0.5]), "per_class_accuracy"),
    ("per-class-text", _set("rows.1.per_class_accuracy", ["a"] * 10), "per_class_accuracy"),
    ("confusion-not-list", _set("rows.2.confusion_changes", {"a": 1}), "confusion_changes"),
    ("confusion-cell", _set("rows.2.confusion_changes.0.true", "Coat"), "confusion_changes[0]"),
    ("no-reference-row", _set("reference", "gone.keras"), "no row of the reference"),
    ("null-reference-accuracy", _set("rows.0.accuracy", None), "accuracy"),
    ("accuracy-above-1", _set("rows.1.accuracy", 1.5), "rows[1].accuracy"),
    ("nan", _set("rows.1.max_abs_diff", float("nan")), "rows[1].max_abs_diff"),
    ("infinity", _set("rows.1.delta_p50_pct", float("inf")), "rows[1].delta_p50_pct"),
    ("flip-no-probability", _set("rows.2.top_flips.0.probability", "-"), "top_flips[0]"),
    ("flip-class-text", _set("rows.2.top_flips.0.class", "Coat"), "top_flips[0].class"),
    ("flip-negative", _set("rows.2.top_flips.0.index", -3), "top_flips[0]"),
    ("artifact-path", _set("rows.2.artifact", "../../../../../victim/private"), "rows[2].artifact"),
    ("runtime-path", _set("rows.2.runtime", "a/../../b"), "rows[2].runtime"),
    ("per-layer-path", _set("rows.2.quantization.per_layer", "../../victim/x.json"), "per_layer"),
    ("float-layers", _set("rows.2.quantization.float_layers", "conv"), "float_layers"),
    ("status", _set("rows.1.status", "great"), "rows[1].status"),
    ("gone-no-p50", _set("baseline_gone.0.p50", "-"), "baseline_gone[0]"),
    ("gpu-delegate", _set("rows.2.compatibility.gpu_delegate.whole_graph", "yes"), "gpu_delegate"),
    ("arena", _set("rows.2.extras", {"arena_bytes": "big"}), "arena_bytes"),
    ("rows-not-list", _set("rows", {"0": {}}), "rows"),
    ("class-names", _set("class_names", [1, 2]), "class_names"),
]


def _write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _crafted(change) -> dict:
    data = copy.deepcopy(valid_report())
    change(data)
    return data


def test_the_valid_report_passes_the_schema(tmp_path):
    """The crafted files below differ from this one by one field each."""
    report = load_report(_write(tmp_path / "report.json", valid_report()), ExitCode.USAGE)
    assert report.reference == "model.keras" and report.rows[2].top_flips == [FLIP]


@pytest.mark.parametrize(
    ("change", "words"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_report_is_refused_naming_the_field(tmp_path, change, words):
    """As `--baseline`: exit 2 before anything is measured; as OUT/report/report.json for
    `toolkit report`: exit 4. Both name the file and the field; neither is an internal error."""
    runner = CliRunner()
    out = tmp_path / "out"
    stored = _write(out / "report" / "report.json", _crafted(change))
    result = runner.invoke(app, ["report", "--out", str(out)])
    assert_refused(result, ExitCode.ARTIFACT, stored, words)
    assert stored.read_text() == json.dumps(_crafted(change)), "the stored report was replaced"
    baseline = _write(tmp_path / "baseline.json", _crafted(change))
    result = runner.invoke(app, ["compare", "--out", str(out), "--baseline", str(baseline)])
    assert_refused(result, ExitCode.USAGE, baseline, words)


@pytest.mark.parametrize(
    "text", ["[]", "not json", "[" * 100_000, '{"rows": []}'], ids=["list", "text", "deep", "bare"]
)
def test_a_report_that_is_no_report_object_is_refused(tmp_path, text):
    path = _write(tmp_path / "report.json", text)
    with pytest.raises(ToolkitError, match="not a usable toolkit report.json") as caught:
        load_report(path, ExitCode.ARTIFACT)
    assert caught.value.code == ExitCode.ARTIFACT


def test_a_fifo_in_place_of_report_json_is_refused_not_missing(tmp_path):
    out = tmp_path / "out"
    (out / "report").mkdir(parents=True)
    os.mkfifo(out / "report" / "report.json")
    result = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert_refused(result, ExitCode.ARTIFACT, out / "report" / "report.json", "not a regular file")


def test_gate_without_reference_accuracy_is_no_crash():
    """A report measured without labels gates on nothing, whatever the rows say."""
    rows = [ok_row("model.keras", "keras", 0.9, 1.0, 1), ok_row("m.tflite", "litert", 0.5, 1, 1)]
    rows[0]["accuracy"] = None
    from tests.test_report import report_of
    from toolkit.comparing.judging import gate_failures

    assert gate_failures(report_of(rows), 1.0, None) == []


# --- paths read from report.json and the manifest -------------------------------------------------


@pytest.fixture
def victim(tmp_path) -> Path:
    """A private file beside --out that a crafted path aims at."""
    path = tmp_path / "victim" / "private.png"
    path.parent.mkdir()
    path.write_bytes(b"SECRET-KEY-MATERIAL")
    return path


def _stored(tmp_path: Path, data: dict) -> Path:
    out = tmp_path / "out"
    _write(out / "report" / "report.json", data)
    return out


def _nothing_leaked(out: Path, victim: Path) -> None:
    assert victim.read_bytes() == b"SECRET-KEY-MATERIAL"
    assert sorted(p.name for p in victim.parent.iterdir()) == ["private.png"]
    for path in (out / "report").rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert b"SECRET-KEY-MATERIAL" not in path.read_bytes(), path
            assert b"U0VDUkVULUtFWS1NQVRFUklBTA" not in path.read_bytes(), path  # its base64


def test_kept_gallery_and_per_layer_plot_are_embedded(tmp_path):
    """The legitimate case the refusals below must not break: both files reach the page."""
    out = _stored(tmp_path, _crafted(_set("gate.max_accuracy_drop", None)))  # no gate: exit 0
    _write(out / "report" / "flips" / "model_int8.tflite.png", "")
    (out / "report" / "flips" / "model_int8.tflite.png").write_bytes(PNG + b"gallery")
    (out / "quantization").mkdir()
    (out / "quantization" / "model_int8.tflite.png").write_bytes(PNG + b"layers")
    result = CliRunner().invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report" / "report.html").read_text()
    for tail in (b"gallery", b"layers"):
        assert base64.b64encode(PNG + tail).decode() in page


@pytest.mark.parametrize("where", ["report.json", "manifest.json"])
def test_per_layer_path_outside_out_is_refused(tmp_path, victim, where):
    """`../../victim/private.json`: no folder made or file written beside the victim, and its
    .png never embedded; the manifest is refused as it is loaded (verify, compare)."""
    crafted = "../../victim/private.json"
    if where == "report.json":
        data = _set("rows.2.quantization.per_layer", crafted)
        out = _stored(tmp_path, _crafted(data))
        args = ["report", "--out", str(out)]
    else:
        out = tmp_path / "out"
        artifact = Artifact("m.tflite", "tflite", "int8", "m.tflite", "litert", "0" * 64, 1)
        artifact.quantization = {"per_layer": crafted}
        manifest = Manifest([artifact], [], "0" * 64, {})
        _write(out / "manifest.json", manifest.to_json())
        args = ["verify", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert_refused(result, ExitCode.ARTIFACT, out, "per_layer", crafted)
    _nothing_leaked(out, victim)


def test_gallery_name_from_a_row_cannot_write_outside(tmp_path, victim):
    """Even past the schema (a Report built in code), the writer puts no file outside."""
    rows = list(make_report(baseline=False).rows)
    rows[2] = replace(rows[2], artifact="../../victim/private", top_flips=[FLIP])
    report = make_report(baseline=False).with_(rows=tuple(rows))
    with pytest.raises(ToolkitError, match="not a plain relative path") as caught:
        write_reports(report, tmp_path / "out" / "report", inputs=None)
    assert caught.value.code == ExitCode.ARTIFACT
    _nothing_leaked(tmp_path / "out", victim)


@pytest.mark.parametrize(
    "link", ["report/flips/model_int8.tflite.png", "report/flips", "quantization"]
)
def test_a_link_among_the_kept_files_is_not_read(tmp_path, victim, link):
    """A link in report/flips/ (or the folder itself, or quantization/) to a private file: its
    bytes are neither copied into report/ nor embedded in the page."""
    out = _stored(tmp_path, valid_report())
    secrets = tmp_path / "secrets"  # a folder holding a private file under the expected name
    secrets.mkdir()
    (secrets / "model_int8.tflite.png").write_bytes(victim.read_bytes())
    target = victim if link.endswith(".png") else secrets
    (out / link).parent.mkdir(parents=True, exist_ok=True)
    (out / link).symlink_to(target)
    # --no-figures: the kept files are read the same way, and no plot is drawn for nothing.
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--no-figures"])
    assert_refused(result, ExitCode.ARTIFACT, out, "link")
    _nothing_leaked(out, victim)


def test_a_huge_file_in_flips_is_not_embedded(tmp_path):
    """A 1 GB gallery (sparse: no disk used) is refused by its size, not read into memory."""
    out = _stored(tmp_path, valid_report())
    huge = out / "report" / "flips" / "model_int8.tflite.png"
    huge.parent.mkdir()
    with open(huge, "wb") as f:
        f.truncate(1 << 30)
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--no-figures"])
    assert_refused(result, ExitCode.ARTIFACT, huge, "larger than")
    assert not (out / "report" / "report.html").exists()


def test_failed_rows_only_report_renders(tmp_path):
    """A report.json whose rows all failed still passes the schema (it is what compare wrote)."""
    data = make_report(baseline=False).to_json()
    data["rows"] = [failed_row("model.keras", "keras", "boom")]
    report = load_report(_write(tmp_path / "report.json", data), ExitCode.USAGE)
    assert not report.rows[0].ok


# --- nothing measured -----------------------------------------------------------------------------


def test_measured_nothing_counts_rows_other_than_the_reference():
    from tests.test_report import report_of
    from toolkit.comparing.judging import measured_nothing

    reference = ok_row("model.keras", "keras", 0.9, 1.0, 1)
    failed = failed_row("m.tflite", "litert", "boom")
    unsupported = failed_row("m.cc", "tflite_micro", "no") | {"status": "unsupported"}
    assert measured_nothing(report_of([reference, failed, unsupported]))
    assert not measured_nothing(
        report_of([reference, failed, ok_row("m.onnx", "onnxruntime", 0.9, 1, 1)])
    )
    assert not measured_nothing(report_of([reference]))  # only the reference was asked for
    assert measured_nothing(report_of([failed_row("model.keras", "keras", "boom")]))


def test_report_of_rows_that_all_failed_exits_4(tmp_path):
    """Re-rendered, a report in which nothing but the reference ran is not a success either."""
    data = make_report(baseline=False).to_json()
    data["rows"] = [data["rows"][0], failed_row("model_int8.tflite", "litert", "boom")]
    out = _stored(tmp_path, data)
    result = CliRunner().invoke(app, ["report", "--out", str(out), "--no-figures"])
    assert_refused(result, ExitCode.ARTIFACT, out / "report" / "report.json", "no artifact could")
    assert (out / "report" / "report.html").is_file()  # the reasons are written all the same
