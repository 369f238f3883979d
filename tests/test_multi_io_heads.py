"""Models with several outputs, end to end (issue 25): a two-head classifier with two inputs
whose Keras and TFLite output orders differ, in every format and runtime, and an SSD-lite-style
detector (boxes and class scores) in the desktop ones, each output judged on its own kind."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests import multi_io_models as models
from toolkit.cli import app


@pytest.fixture(scope="module")
def multi_task(tmp_path_factory):
    # The figures of a report with several outputs are drawn here.
    return models.export_and_compare(
        tmp_path_factory, models.build_multi_task, "multi_task", figures=True
    )


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    # The tiny backbone: `make bench` measures the MobileNetV2 0.35 detector at 96x96.
    def build(folder):
        return models.build_detector(folder, "tiny", side=32)

    # Every format and runtime of a two-output model is the multi-task model's test; the
    # detector's heads (per-anchor boxes and scores, judged as values) in the desktop formats.
    return models.export_and_compare(tmp_path_factory, build, "detector", **models.DESKTOP)


def test_two_heads_are_judged_each_with_its_labels(multi_task):
    manifest, report, out = multi_task
    models.check_every_variant_and_runtime(manifest, report)
    heads = {o["name"]: o for o in manifest.outputs}
    assert {h["kind"] for h in heads.values()} == {"classifier"}
    assert heads["colour"]["class_names"] == ["red", "blue"]
    assert heads["shape"]["class_names"] == ["0", "1", "2", "3"]
    assert [i["name"] for i in manifest.inputs] == ["image", "sensor"]
    for artifact in manifest.artifacts:  # every format keeps both inputs' names
        if artifact.inputs:
            assert {i["name"] for i in artifact.inputs} == {"image", "sensor"}, artifact.name
    # TFLite orders the outputs its own way; every runtime's row is matched by name.
    keras_order = [o["name"] for o in manifest.artifact("model.keras").outputs]
    tflite_order = [o["name"] for o in manifest.artifact("model_float32.tflite").outputs]
    assert sorted(keras_order) == sorted(tflite_order) and keras_order != tflite_order
    reference = report.reference_row
    for row in report.rows:
        if row.ok and row.outputs:
            assert set(row.outputs) == {"shape", "colour"}
            worst = min(row.outputs[h]["accuracy"] for h in row.outputs)
            assert row.accuracy == worst  # the row's figure is its worst output's
    float_tflite = next(r for r in report.rows if r.key == ("model_float32.tflite", "litert"))
    for name in ("shape", "colour"):
        assert float_tflite.outputs[name]["agreement"] == 1.0
        assert float_tflite.outputs[name]["accuracy"] == reference.outputs[name]["accuracy"]
    saved = json.loads((out / "report" / "report.json").read_text())
    assert set(saved["rows"][0]["outputs"]) == {"shape", "colour"}
    html = (out / "report" / "report.html").read_text()
    assert "Per output" in html and "<code>colour</code>" in html
    printed = CliRunner().invoke(app, ["predict", "--out", str(out), "--index", "0"])
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()
    assert lines[0] == "test image 0:"
    assert lines[1].startswith("  colour: ") and lines[2].startswith("  shape: ")


def test_detector_heads_are_judged_as_values(detector):
    manifest, report, _ = detector
    models.check_judged_rows(manifest, report)
    assert {row.runtime for row in report.rows if row.ok} == set(models.DESKTOP["runtimes"])
    heads = {o["name"]: o for o in manifest.outputs}
    assert heads["boxes"]["shape"][1:] == [128, 4] and heads["scores"]["shape"][1:] == [128, 3]
    assert {h["kind"] for h in heads.values()} == {"values"}
    for row in report.rows:
        if row.ok:
            assert row.agreement is None and set(row.outputs) == {"boxes", "scores"}
            assert row.snr_db == min(o["snr_db"] or np.inf for o in row.outputs.values())


def test_a_device_measures_both_heads_as_the_host_does(multi_task, ssh_device, tmp_path):
    """The rows of a two-output model measured by the device agent over a real sshd: each output
    by name, the same figures as on the host (the same runtime computes the same outputs)."""
    import toolkit

    _, _, out = multi_task
    loopback = ssh_device.url(tmpdir=str(tmp_path))
    report = toolkit.compare(
        out,
        **models.QUICK,
        runtimes=["keras", "litert", "onnxruntime"],
        devices=["local", loopback],
        ssh_config=ssh_device.config,
    )
    local = {row.key: row for row in report.rows if row.device_name == "local"}
    remote = [row for row in report.rows if row.device_name != "local"]
    assert {row.runtime for row in remote} == {"litert", "onnxruntime"}
    for row in remote:
        twin = local[(row.artifact, row.runtime)]
        assert row.ok and twin.ok, (row.error, twin.error)
        assert set(row.outputs) == {"shape", "colour"}
        for name in row.outputs:
            for figure in ("agreement", "max_abs_diff", "accuracy"):
                assert row.outputs[name][figure] == twin.outputs[name][figure], (row.key, name)
