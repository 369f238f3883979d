"""The format registry: every format has its test module, and export converts once."""

from pathlib import Path

from tests.conftest import tiny_artifact
from toolkit.exporters import EXPORTERS


def test_every_registered_format_has_a_test_module():
    here = Path(__file__).parent
    assert {f"test_{name.replace('-', '_')}.py" for name in EXPORTERS} <= {
        p.name for p in here.glob("test_*.py")
    }


def test_intermediates_are_built_once_per_export(tmp_path, tiny, monkeypatch):
    """The savedmodel artifact is written once with a dynamic batch; the four TFLite variants
    and the int8 debugger read one SavedModel of batch 1, which TF's converter loads once for
    all of them; both ONNX variants one tf2onnx graph."""
    from tensorflow.lite.python import lite

    from toolkit.exporters import onnx, savedmodel
    from toolkit.exporters.base import ExportContext
    from toolkit.exporters.tflite import int8_debugger, tflite_bytes

    calls = {"savedmodel": 0, "onnx": 0, "load": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        savedmodel, "write_savedmodel", counted("savedmodel", savedmodel.write_savedmodel)
    )
    monkeypatch.setattr(onnx, "write_float_onnx", counted("onnx", onnx.write_float_onnx))
    monkeypatch.setattr(lite, "_load", counted("load", lite._load))
    context = ExportContext(
        tiny.model, tiny.context.source, tiny.context.calibration, 17, tmp_path / "build"
    )
    for name in ("savedmodel", "tflite", "onnx"):
        for variant in EXPORTERS[name]:
            variant.write(tiny.model, tmp_path / variant.filename, context)
    int8_debugger(context)
    assert calls == {"savedmodel": 2, "onnx": 1, "load": 1}
    assert tflite_bytes(context, "int8") is tflite_bytes(context, "int8")


def test_tiny_artifact_helper_writes_each_file_once(tiny):
    variant = EXPORTERS["keras"][0]
    path = tiny_artifact(tiny, variant)
    assert tiny_artifact(tiny, variant) == path and path.stat().st_size > 0
