"""Ethos-U export: int8 TFLite files compiled by the real Vela compiler, its estimate parsed,
CPU fallbacks named, float files refused. No NPU here: the figures are Vela's own estimate."""

import csv

import numpy as np
import pytest

from toolkit.errors import ExitCode, ToolkitError
from toolkit.exporters.ethos_u import DEFAULT_NPUS, VARIANTS, run_vela, system_of


def dense_macs(path) -> int:
    """Multiply-accumulates of the file's FULLY_CONNECTED layers, from their weight shapes."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    shapes = {t["index"]: t["shape"] for t in interpreter.get_tensor_details()}
    return sum(
        int(np.prod(shapes[op["inputs"][1]]))
        for op in interpreter._get_ops_details()
        if op["op_name"] == "FULLY_CONNECTED"
    )


@pytest.fixture(scope="module")
def compiled(tiny_model_dir, tmp_path_factory):
    """The tiny dense model's int8 file compiled for an Ethos-U55 with 128 MACs per cycle."""
    return run_vela(
        tiny_model_dir / "model_int8.tflite", "ethos-u55-128", tmp_path_factory.mktemp("vela")
    )


def test_default_accelerators_and_their_files():
    assert DEFAULT_NPUS == ("ethos-u55-128", "ethos-u85-256")
    suffixes = ("tflite", "cc", "h")
    expected = {f"model_int8_vela_{npu}.{suffix}" for npu in DEFAULT_NPUS for suffix in suffixes}
    assert {v.filename for v in VARIANTS} == expected
    assert all(v.runtime is None and v.source for v in VARIANTS)
    assert system_of("ethos-u55-128") == ("Ethos_U55_High_End_Embedded", "Shared_Sram")
    with pytest.raises(ToolkitError, match="--npu ethos-u99"):
        system_of("ethos-u99")


def test_dense_int8_runs_wholly_on_the_npu_within_a_plausible_estimate(compiled, tiny_model_dir):
    from toolkit.formats.tflite import graph_nodes

    record = compiled.record
    assert record["accelerator"] == "ethos-u55-128" and record["vela_version"]
    assert (record["system_config"], record["memory_mode"]) == system_of("ethos-u55-128")
    figures = record["estimate"]
    assert figures["cpu_operators"] == 0 and figures["cpu_fallback"] == []
    assert figures["npu_operators"] >= 3
    # Vela counts the dense layers' MACs and a few more for the softmax.
    macs = dense_macs(tiny_model_dir / "model_int8.tflite")
    assert macs <= figures["macs"] <= 1.05 * macs
    # Weights stream from flash: at least one byte per int8 weight, re-encoded by Vela.
    assert macs <= figures["flash_bytes"] <= 4 * macs
    assert 0 < figures["sram_bytes"] <= 64 * 1024
    assert 0 < figures["inference_ms"] < 1.0 and figures["clock_hz"] > 0
    assert figures["cycles_total"] == pytest.approx(
        figures["inference_ms"] / 1000 * figures["clock_hz"], rel=0.01
    )
    nodes = graph_nodes(compiled.tflite)
    assert [(node["op"], node["custom"]) for node in nodes] == [("ethos-u", True)]
    with compiled.per_layer.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["Target"] for row in rows} == {"NPU"}


@pytest.fixture(scope="module")
def normalized_int8(tmp_path_factory):
    """An int8 file whose L2 normalization squares in float: SQUARE is no NPU operator."""
    import keras

    from toolkit.exporters import EXPORTERS
    from toolkit.exporters.base import ExportContext

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8), name="images"),
            keras.layers.Flatten(),
            keras.layers.Dense(16),
            keras.layers.UnitNormalization(),
            keras.layers.Dense(4, activation="softmax", name="probabilities"),
        ]
    )
    folder = tmp_path_factory.mktemp("normalized")
    calibration = np.random.default_rng(0).uniform(0, 1, (32, 8, 8)).astype(np.float32)
    context = ExportContext(model, folder / "model.keras", calibration, 17, folder / ".build")
    variant = next(v for v in EXPORTERS["tflite"] if v.variant == "int8")
    variant.write(model, folder / variant.filename, context)
    return folder / variant.filename


def test_an_operator_the_npu_lacks_falls_back_to_the_cpu_named(normalized_int8, tmp_path):
    from toolkit.formats.tflite import graph_nodes

    result = run_vela(normalized_int8, "ethos-u55-128", tmp_path)
    figures = result.record["estimate"]
    fallback = {entry["op"]: entry for entry in figures["cpu_fallback"]}
    assert "SQUARE" in fallback and "Unsupported opType" in fallback["SQUARE"]["reason"]
    assert fallback["SQUARE"]["tensor"]
    assert figures["cpu_operators"] >= 1 and figures["npu_operators"] >= 1
    ops = {node["op"] for node in graph_nodes(result.tflite)}
    assert {"ethos-u", "SQUARE"} <= ops  # the CPU runs SQUARE beside the NPU's part


def test_a_float_file_is_refused_with_the_reason(tiny_model_dir, tmp_path):
    with pytest.raises(ToolkitError, match="not an integer model") as refused:
        run_vela(tiny_model_dir / "model_float32.tflite", "ethos-u55-128", tmp_path)
    assert refused.value.code == ExitCode.CONVERSION
    assert "model_float32.tflite" in str(refused.value) and not list(tmp_path.iterdir())


def test_estimated_rows_are_vela_figures_never_gated_or_recommended():
    """A compare row for a compiled file: named after its accelerator, status `estimated`,
    Vela's latency in extras and no measured figure; gates and the recommendation skip it."""
    from toolkit.comparing.estimates import estimated_rows
    from toolkit.comparing.judging import gate_failures, recommend
    from toolkit.results import ESTIMATED, Report, Row
    from toolkit.store import Artifact, Manifest

    estimate = {
        "inference_ms": 0.25,
        "clock_hz": 5e8,
        "npu_operators": 3,
        "cpu_operators": 1,
        "cpu_fallback": [{"op": "SQUARE", "tensor": "t", "reason": "Unsupported opType"}],
    }
    npu = {"accelerator": "ethos-u55-128", "system_config": "S", "vela_version": "5.2.0"}
    compiled = Artifact(
        "model_int8_vela_ethos-u55-128.tflite", "ethos-u", "int8_vela_ethos-u55-128",
        "model_int8_vela_ethos-u55-128.tflite", None, "0" * 64, 100,
        npu={**npu, "estimate": estimate},
    )  # fmt: skip
    other = Artifact("model_int8.tflite", "tflite", "int8", "model_int8.tflite", "litert", "0", 1)
    (row,) = estimated_rows(Manifest([other, compiled], [], "0", {}))
    assert (row.runtime, row.status) == ("ethos-u55-128", ESTIMATED)
    assert row.extras["estimated_latency_ms"] == 0.25 and row.latency_ms is None
    assert row.accuracy is None and row.agreement is None
    assert "not measured" in row.error and "SQUARE (Unsupported opType)" in row.error
    latency = {"p50": 1.0, "p90": 1.0, "p99": 1.0, "mean": 1.0, "std": 0.0, "min": 1.0}
    reference = Row("model.keras", "keras", "float32", "keras", 9, accuracy=0.9, latency_ms=latency)
    report = Report(1, "model.keras", "now", {}, [], 10, {}, (reference, row))
    assert gate_failures(report, max_accuracy_drop=0.0, max_latency_regression=None) == []
    assert recommend(report) is reference  # 0.25 ms estimated is not 1 ms measured
    from toolkit.reporting.html import report_html

    page = report_html(report, {})
    section = page[page.index("<h2>NPU estimates</h2>") :]
    assert "<th>inference_ms</th><td>0.25</td>" in section
    assert "<th>on the CPU: SQUARE</th><td>Unsupported opType</td>" in section
