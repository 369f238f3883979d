"""The runtime registry: every runtime has its test module; file types map to runtimes."""

from pathlib import Path

from toolkit.runners import RUNNERS, runners_for


def test_every_registered_runtime_has_a_test_module():
    here = Path(__file__).parent
    expected = {f"test_{name.replace('-', '_')}.py" for name in RUNNERS}
    assert expected <= {p.name for p in here.glob("test_*.py")}


def test_file_types_map_to_their_runtimes_in_registry_order():
    assert [r.runtime for r in runners_for("a/model_int8.tflite")][0] == "litert"
    assert [r.runtime for r in runners_for("m.ONNX")][0] == "onnxruntime"
    assert [r.runtime for r in runners_for("savedmodel", is_dir=True)] == ["tensorflow"]
    assert runners_for("notes.txt") == []
