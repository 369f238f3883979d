"""The runtime registry: every runtime has its test module; file types map to runtimes."""

from pathlib import Path

import pytest

from toolkit.runners import RUNNERS, missing_runtime, runners_for


def test_every_registered_runtime_has_a_test_module():
    here = Path(__file__).parent
    expected = {f"test_{name.replace('-', '_')}.py" for name in RUNNERS}
    assert expected <= {p.name for p in here.glob("test_*.py")}


def test_file_types_map_to_their_runtimes_in_registry_order():
    assert [r.runtime for r in runners_for("a/model_int8.tflite")][0] == "litert"
    assert [r.runtime for r in runners_for("m.ONNX")][0] == "onnxruntime"
    assert [r.runtime for r in runners_for("savedmodel", is_dir=True)] == ["tensorflow"]
    assert runners_for("notes.txt") == []


@pytest.mark.parametrize("runtime", ["tflite-micro", "openvino"])
def test_a_missing_runtime_package_is_one_install_line(monkeypatch, runtime):
    import importlib.util

    module = RUNNERS[runtime].module
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == module else real_find_spec(name, *a),
    )
    package = RUNNERS[runtime].package
    assert missing_runtime(runtime) == (
        f"{runtime}: skipped, its package is not installed (pip install {package})"
    )
    assert missing_runtime("litert") is None


def test_importing_the_registry_loads_no_optional_runtime():
    """So that a runtime whose package is missing cannot break `import toolkit.runners`."""
    import subprocess
    import sys

    optional = "{'openvino', 'tflite_micro'}"
    code = f"import sys, toolkit.runners; print(sorted({optional} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
