"""The tflite format: four variants, each checked for what its name promises."""

import numpy as np
import pytest

from tests.conftest import round_trip, tiny_artifact
from toolkit.exporters import EXPORTERS


def _tensors(path) -> list[dict]:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path)).get_tensor_details()


def check_float32(path, kernel_values):
    # int32 is the Flatten's shape constant; no tensor may be reduced below float32.
    assert {np.dtype(t["dtype"]).name for t in _tensors(path)} <= {"float32", "int32"}


def check_float16(path, kernel_values):
    # Every kernel stored as float16 (dequantized once at load): the float16 tensors must hold
    # at least as many values as the model's kernels, and nothing may be int8.
    tensors = _tensors(path)
    float16_values = sum(int(np.prod(t["shape"])) for t in tensors if t["dtype"] == np.float16)
    assert float16_values >= kernel_values
    assert np.int8 not in {t["dtype"] for t in tensors}


def check_dynamic_int8(path, kernel_values):
    tensors = _tensors(path)
    int8_values = sum(int(np.prod(t["shape"])) for t in tensors if t["dtype"] == np.int8)
    # int8 kernels (the converter leaves kernels under 1,024 values in float: 32x4 here)...
    assert int8_values >= kernel_values - 32 * 4
    assert np.float32 in {t["dtype"] for t in tensors}  # ...and float activations


def check_int8(path, kernel_values):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    int8_values = sum(int(np.prod(t["shape"])) for t in _tensors(path) if t["dtype"] == np.int8)
    assert int8_values >= kernel_values  # every kernel in int8


STRUCTURE = {
    "float32": check_float32,
    "float16": check_float16,
    "dynamic_int8": check_dynamic_int8,
    "int8": check_int8,
}


def test_every_tflite_variant_has_a_structure_check():
    assert {v.variant for v in EXPORTERS["tflite"]} == set(STRUCTURE)


@pytest.mark.parametrize("variant", EXPORTERS["tflite"], ids=lambda v: v.filename)
def test_tflite_structure_and_round_trip(tiny, variant):
    kernels = sum(int(np.prod(w.shape)) for w in tiny.model.weights if len(w.shape) == 2)
    STRUCTURE[variant.variant](tiny_artifact(tiny, variant), kernels)
    figures = round_trip(tiny, variant)
    assert variant.tolerance.failures(figures) == [], figures


def _op_names(path) -> list[str]:
    from toolkit.formats.tflite import graph_nodes

    return [node["op"] for node in graph_nodes(path)]


@pytest.fixture(scope="module")
def dynamic_batch_float32(tiny, tmp_path_factory):
    """The tiny model's float32 file as `--batch dynamic` writes it."""
    from toolkit.exporters.base import ExportContext

    folder = tmp_path_factory.mktemp("dynamic_batch")
    context = ExportContext(
        tiny.model, tiny.context.source, tiny.context.calibration, 17, folder / ".build", batch=None
    )
    variant = next(v for v in EXPORTERS["tflite"] if v.variant == "float32")
    variant.write(tiny.model, folder / variant.filename, context)
    return folder / variant.filename


def test_static_batch_leaves_only_the_model_ops(tiny, dynamic_batch_float32):
    """A fixed batch of one removes the ops that computed the batch at run time, and with
    them every op the GPU delegate could not take; `--batch dynamic` keeps them."""
    from toolkit.formats.tflite import gpu_delegate_compatibility

    dynamic = _op_names(dynamic_batch_float32)
    assert {"SHAPE", "STRIDED_SLICE", "PACK"} <= set(dynamic)
    assert not gpu_delegate_compatibility(dynamic_batch_float32)["whole_graph"]
    for variant in EXPORTERS["tflite"]:
        path = tiny_artifact(tiny, variant)
        kernels = [op for op in _op_names(path) if op not in ("QUANTIZE", "DEQUANTIZE")]
        assert kernels == ["RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED", "SOFTMAX"], path
        assert gpu_delegate_compatibility(path)["whole_graph"], path


def only_output(outputs):
    """The one output of a one-output model, whether a runner returns it by name or not."""
    return next(iter(outputs.values())) if isinstance(outputs, dict) else outputs


# OpenVINO 2026.4's CPU plugin computes this 64-feature static int8 graph wrongly on one
# thread (right on two, with a dynamic batch, or without its low-precision transformations;
# the tutorial's 784 features are right): a runtime bug, kept visible here. Not strict: with its
# oneDNN held to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) the same graph computed right, so a CPU
# without AVX-512 may pass.
OPENVINO_STATIC_INT8 = pytest.mark.xfail(
    reason="OpenVINO CPU: static-shape int8 FC with 64 inputs on 1 thread", strict=False
)


@pytest.mark.parametrize(
    ("runtime", "variant"),
    [
        ("litert", "float32"),
        ("litert", "int8"),
        ("tflite-micro", "float32"),
        ("tflite-micro", "int8"),
        ("openvino", "float32"),
        pytest.param("openvino", "int8", marks=OPENVINO_STATIC_INT8),
    ],
)
def test_batch_one_file_computes_every_item(tiny, runtime, variant):
    """37 items (not a multiple of anything) through a file whose batch is fixed at one: one
    row per item, each the model's, in every runtime that reads the file."""
    from toolkit.metrics import compare_outputs
    from toolkit.process import quiet_stderr
    from toolkit.runners import RUNNERS

    spec = next(v for v in EXPORTERS["tflite"] if v.variant == variant)
    path = tiny_artifact(tiny, spec)
    with quiet_stderr(), RUNNERS[runtime](path) as runner:
        assert runner.io_details()[0][0]["shape"][0] == 1
        outputs = only_output(runner.predict(tiny.inputs[:37]))
        if runtime != "tflite-micro":  # TFLM's bound call keeps the last item's outputs only
            runner.bind(tiny.inputs[:37])()
            bound = only_output(runner.bound_outputs())
            np.testing.assert_allclose(bound, outputs, rtol=0, atol=1e-6)
            # (TFLM's extras measure its arena in subprocesses; its runner's test checks them.)
            assert runner.extras()["batching"] == "one call per item"
    assert outputs.shape == (37, 4)
    # Scores, not classes: 37 near-uniform scores of an untrained model may swap a class.
    figures = compare_outputs(outputs, tiny.reference[:37], class_scores=False)
    if spec.tolerance.max_abs_diff is not None:
        assert figures.max_abs_diff <= spec.tolerance.max_abs_diff, figures
    else:
        assert figures.snr_db >= spec.tolerance.min_snr_db, figures


def test_node_data_colours_every_quantized_op_of_the_int8_graph(tiny, tmp_path):
    """The per-layer error as Model Explorer node data: read back into the package's own
    classes, each value lands on an operator of the graph the package's TFLite adapter
    builds from the same file."""
    pytest.importorskip("model_explorer", reason="the 'explorer' extra is not installed")
    import json

    import dacite
    from model_explorer import node_data_builder as ndb
    from model_explorer.builtin_tflite_flatbuffer_adapter import BuiltinTfliteFlatbufferAdapter

    from toolkit.exporters.tflite import int8_debugger
    from toolkit.quantization.node_data import write_node_data

    errors = int8_debugger(tiny.context).errors
    path = tiny_artifact(tiny, next(v for v in EXPORTERS["tflite"] if v.variant == "int8"))
    target = tmp_path / "model_int8.tflite.node_data.json"
    assert write_node_data(errors, path, target)
    written = json.loads(target.read_text())
    collections = BuiltinTfliteFlatbufferAdapter().convert(str(path), {})["graphCollections"]
    graph = collections[0].graphs[0]  # the main subgraph, as a dict of nodes
    assert set(written) == {graph["id"]}
    data = dacite.from_dict(ndb.GraphNodeData, written[graph["id"]])
    outputs = {
        attr["value"]
        for node in graph["nodes"]
        for meta in node.get("outputsMetadata") or []
        for attr in meta["attrs"]
        if attr["key"] == "tensor_name"
    }
    activations = [t for t in errors.tensors if t.kind == "activation"]
    assert set(data.results) <= outputs and len(data.results) == len(activations)
    values = sorted(result.value for result in data.results.values())
    assert values == sorted(t.metrics[errors.plot_metric] for t in activations)


def test_cli_batch_dynamic_keeps_todays_graph_and_the_manifest_says_so(tiny, tmp_path):
    from typer.testing import CliRunner

    from toolkit.cli import app
    from toolkit.store import load_manifest

    data = tmp_path / "data.npz"
    np.savez(data, x_test=tiny.inputs[:100], x_train=tiny.inputs[:100])
    out = tmp_path / "out"
    args = ["export", "--out", str(out), "--model", str(tiny.folder / "model.keras")]
    args += ["--data", str(data), "--format", "tflite", "--calib-samples", "50", "--no-figures"]
    refused = CliRunner().invoke(app, [*args, "--c-name", "9-lives"])
    assert refused.exit_code == 2 and "--c-name" in refused.output
    done = CliRunner().invoke(app, [*args, "--batch", "dynamic"])
    assert done.exit_code == 0, done.output
    manifest = load_manifest(out)
    for artifact in manifest.artifacts:
        assert artifact.batch is None, artifact.name  # every file keeps its dynamic batch
    assert "SHAPE" in _op_names(out / "model_float32.tflite")


def test_node_data_is_written_by_a_child_and_a_failed_one_says_why(tiny, tmp_path):
    """Export writes node data in child processes beside the conversions: a file that came
    is in the record; one that did not leaves its reason there instead."""
    pytest.importorskip("model_explorer", reason="the 'explorer' extra is not installed")
    import json

    from toolkit.exporters.tflite import int8_debugger
    from toolkit.quantization.node_data import NodeDataJobs
    from toolkit.quantization.records import layer_errors_json

    errors = int8_debugger(tiny.context).errors
    path = tiny_artifact(tiny, next(v for v in EXPORTERS["tflite"] if v.variant == "int8"))
    record = tmp_path / "model_int8.tflite.json"
    record.write_text(json.dumps(layer_errors_json("model_int8.tflite", errors)))
    jobs, good, bad = NodeDataJobs(), {}, {}
    jobs.start(record, path, tmp_path / "good.node_data.json", errors.plot_metric)
    jobs.start(tmp_path / "missing.json", path, tmp_path / "bad.node_data.json", "rmse")
    jobs.describe("quantization/good.node_data.json", good)
    jobs.describe("quantization/bad.node_data.json", bad)
    problems = jobs.finish()
    assert good == {"node_data": "quantization/good.node_data.json"}
    written = json.loads((tmp_path / "good.node_data.json").read_text())
    (graph,) = written.values()
    assert len(graph["results"]) == sum(t.kind == "activation" for t in errors.tensors)
    assert "node_data" not in bad and bad["node_data_skipped"].startswith("not written")
    assert len(problems) == 1 and problems[0].startswith("bad.node_data.json: not written")
