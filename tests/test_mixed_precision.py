"""Mixed precision in the export pipeline: an int8 variant that misses its tolerance is
replaced by one with its most damaging layers in float, or left out naming them."""

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.test_quantization import build_outlier_model, synthetic_images
from toolkit.cli import app
from toolkit.errors import ToolkitWarning


@pytest.fixture(scope="module")
def outlier_inputs(tmp_path_factory):
    """A model whose int8 weights lose the class (100x weights on an always-black border) and
    labelled data for it."""
    folder = tmp_path_factory.mktemp("mixed")
    build_outlier_model("weights").save(folder / "model.keras")
    x_train, y_train = synthetic_images(np.random.default_rng(5), 600)
    x_test, y_test = synthetic_images(np.random.default_rng(6), 500)
    np.savez(folder / "data.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return folder


def test_auto_replaces_full_int8_with_a_mixed_model(outlier_inputs, tmp_path):
    import toolkit

    out = tmp_path / "out"
    with pytest.warns(ToolkitWarning, match="replaced by model_mixed_int8"):
        manifest = toolkit.export(
            out,
            model=outlier_inputs / "model.keras",
            data=outlier_inputs / "data.npz",
            formats=["tflite", "onnx"],
            figures=False,
        )
    names = {a.name for a in manifest.artifacts}
    # Dynamic-range int8 has no mixed fallback (it keeps activations in float already): out.
    assert [entry["artifact"] for entry in manifest.left_out] == ["model_dynamic_int8.tflite"]
    for suffix in ("tflite", "onnx"):
        assert f"model_int8.{suffix}" not in names and not (out / f"model_int8.{suffix}").exists()
        mixed = manifest.artifact(f"model_mixed_int8.{suffix}")
        assert mixed.variant == "mixed_int8" and (out / mixed.path).is_file()
        assert mixed.quantization["float_layers"] == ["outlier"]
        replaced = mixed.quantization["replaces"]
        assert replaced["artifact"] == f"model_int8.{suffix}"
        assert replaced["validation"]["agreement"] < 0.97 <= mixed.validation["agreement"]
        assert (out / mixed.quantization["per_layer"]).is_file()
    assert manifest.tolerances == {
        "min_agreement": None,
        "max_accuracy_drop": None,
        "mixed_precision": "auto",
    }


def test_off_leaves_int8_out_naming_the_worst_layers(outlier_inputs, tmp_path):
    out = tmp_path / "out"
    args = ["export", "--out", str(out), "--model", str(outlier_inputs / "model.keras")]
    args += ["--data", str(outlier_inputs / "data.npz"), "--format", "tflite", "--no-figures"]
    result = CliRunner().invoke(app, [*args, "--mixed-precision", "off"])
    assert result.exit_code == 5, result.output
    assert "model_int8.tflite: validation against the Keras reference failed" in result.output
    assert "worst layers: outlier (" in result.output
    import toolkit

    listed = {a.name for a in toolkit.verify(out).manifest.artifacts}
    assert "model_int8.tflite" not in listed and "model_float32.tflite" in listed
    assert (out / "quantization" / "model_int8.tflite.json").is_file()


def test_a_tighter_bound_set_by_the_user_is_recorded(outlier_inputs, tmp_path):
    import toolkit

    manifest = toolkit.export(
        tmp_path / "out",
        model=outlier_inputs / "model.keras",
        data=outlier_inputs / "data.npz",
        formats=["onnx"],
        mixed_precision="off",
        min_agreement=0.5,
        max_accuracy_drop=50,
        figures=False,
    )
    int8 = manifest.artifact("model_int8.onnx")  # 0.92 agreement is enough for 0.5
    assert int8.validation["tolerance"] == {
        "min_agreement": 0.5,
        "min_snr_db": 20.0,
        "max_accuracy_drop": 50,
    }
    assert manifest.tolerances["min_agreement"] == 0.5


def test_a_failing_debugger_costs_the_record_not_the_file(trained_dir, tmp_path, monkeypatch):
    import toolkit
    import toolkit.quantization.tflite as debugger_module

    def refuse(*args, **kwargs):
        raise RuntimeError("debugger says no")

    monkeypatch.setattr(debugger_module, "TFLiteInt8Debugger", refuse)
    with pytest.warns(ToolkitWarning, match="model_int8.tflite: no per-layer error"):
        manifest = toolkit.export(
            tmp_path / "out", model=trained_dir / "model.keras", formats=["tflite"], figures=False
        )
    assert manifest.artifact("model_int8.tflite").quantization == {}
    assert manifest.left_out == []


def test_onnx_int8_tries_7_bit_weights_before_keeping_layers_in_float(outlier_inputs, tmp_path):
    """Full int8 misses its tolerance, so ONNX Runtime's reduce_range (7-bit weights, the remedy
    on CPUs without VNNI) is tried first; the manifest records which file was kept, what the
    other one measured, and the validating host's CPU and int8 instruction sets."""
    import toolkit
    from toolkit.cpu import INT8_FLAGS

    with pytest.warns(ToolkitWarning):
        manifest = toolkit.export(
            tmp_path / "out",
            model=outlier_inputs / "model.keras",
            data=outlier_inputs / "data.npz",
            formats=["onnx"],
            figures=False,
        )
    names = {a.name for a in manifest.artifacts}
    if "model_int8.onnx" in names:  # 7-bit weights held the tolerance: full int8 is kept
        kept = manifest.artifact("model_int8.onnx").quantization
        assert kept["reduce_range"] is True
        assert kept["without_reduce_range"]["agreement"] < 0.97
    else:  # they missed too: the mixed model starts from the closer of the two, and says so
        kept = manifest.artifact("model_mixed_int8.onnx").quantization
        assert kept["float_layers"]
        start = kept["replaces"]["validation"]["agreement"]
        if kept["reduce_range"]:
            other = kept["without_reduce_range"]
        else:
            assert kept["reduce_range_missed"]["problems"][0].startswith("agreement")
            other = kept["reduce_range_missed"]["validation"]
        assert other["agreement"] <= start < 0.97
    float32 = manifest.artifact("model_float32.onnx")
    assert "reduce_range" not in float32.quantization  # only a variant with a retry says so
    host = float32.validation["host"]
    assert host["cpu"] and host["arch"]
    assert set(host["instruction_sets"]) <= set(INT8_FLAGS)


def _saturating_int8(model, path, context):
    """8-bit QDQ calibrated on a thousandth of the inputs' range, so activations saturate: a
    stand-in for a CPU without VNNI, whose u8s8 sums saturate (every CPU here has VNNI)."""
    from toolkit.exporters.onnx import shared_prepared_onnx
    from toolkit.quantization.qdq import quantize_qdq

    quantize_qdq(shared_prepared_onnx(context), path, context.calibration / 1000)


def test_the_search_starts_from_7_bit_weights_when_they_came_closer(
    outlier_inputs, tmp_path, monkeypatch
):
    """Both full-int8 files miss; the 7-bit one is closer, so every mixed model is built with
    7-bit weights, and the manifest says so."""
    from dataclasses import replace

    import onnx
    from onnx import numpy_helper

    import toolkit
    from toolkit.exporters import EXPORTERS

    float32, int8 = EXPORTERS["onnx"]
    monkeypatch.setitem(EXPORTERS, "onnx", (float32, replace(int8, write=_saturating_int8)))
    with pytest.warns(ToolkitWarning, match="replaced by model_mixed_int8.onnx"):
        manifest = toolkit.export(
            tmp_path / "out",
            model=outlier_inputs / "model.keras",
            data=outlier_inputs / "data.npz",
            formats=["onnx"],
            figures=False,
        )
    mixed = manifest.artifact("model_mixed_int8.onnx")
    kept = mixed.quantization
    assert kept["reduce_range"] is True and "reduce_range_missed" not in kept
    saturated, start = kept["without_reduce_range"], kept["replaces"]["validation"]
    assert saturated["agreement"] < start["agreement"] < 0.97 <= mixed.validation["agreement"]
    graph = onnx.load(str(tmp_path / "out" / mixed.path)).graph
    weights = [
        numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8
    ]
    weights = [w for w in weights if w.size > 1]  # zero points are scalars or per channel zeros
    assert weights and max(int(np.abs(w.astype(int)).max()) for w in weights) <= 64  # 7 bits


def test_the_warning_of_a_model_judged_by_snr_names_its_snr(outlier_inputs, tmp_path):
    """The same int8-hostile weights behind linear outputs: values, judged by SNR, whose
    warning said "(agreement nan)" before."""
    import keras

    import toolkit

    model = keras.saving.load_model(outlier_inputs / "model.keras")
    model.get_layer("probabilities").activation = keras.activations.linear
    model.save(tmp_path / "values.keras")
    with np.load(outlier_inputs / "data.npz") as arrays:
        np.savez(tmp_path / "data.npz", x_train=arrays["x_train"], x_test=arrays["x_test"])
    with pytest.warns(ToolkitWarning) as warned:
        manifest = toolkit.export(
            tmp_path / "out",
            model=tmp_path / "values.keras",
            data=tmp_path / "data.npz",
            formats=["tflite"],
            figures=False,
        )
    assert manifest.outputs[0]["kind"] == "values"
    replaced = [str(w.message) for w in warned if "replaced by model_mixed_int8" in str(w.message)]
    assert len(replaced) == 1 and "nan" not in replaced[0], replaced
    assert replaced[0].endswith(" dB)") and "(SNR " in replaced[0]
