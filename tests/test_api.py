"""The Python API: the README's example runs as written, and a format plus a runtime registered
from outside (one module each, one registry line each) go through export, compare and report."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.exporters.base import ExportVariant, Tolerance
from toolkit.runners.base import Runner

README = Path(__file__).parents[1] / "README.md"


# The example's sizes, made small: every call and attribute it uses is what is under test, and the
# amounts of data and timing runs change none of them (`make run` trains and compares full size).
SMALLER = {"limit=2000": "limit=300", "runs=200": "runs=5", "max_seconds=1": "max_seconds=0.1"}


def test_readme_python_example_runs(tmp_path):
    text = README.read_text()
    section = text[text.index("## Python API") :]
    example = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for size, small in SMALLER.items():
        assert re.search(rf"\b{size}\b", example), f"the README example no longer says {size}"
        example = re.sub(rf"\b{size}\b", small, example)
    (tmp_path / "example.py").write_text(example)  # a script, as a user would save it
    result = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "exported" / "report" / "report.json").is_file()
    assert "recommended" in result.stdout


# --- a dummy format and runtime, registered by a fixture --------------------------------------


def export_dense_npz(model, path, context):
    """The model's Dense kernels and biases as plain arrays (a Flatten/Dense stack only)."""
    arrays = {f"w{i}": w.numpy() for i, w in enumerate(model.weights)}
    with open(path, "wb") as f:  # np.savez would append ".npz" to a temporary name
        np.savez(f, **arrays)


class NumpyDenseRunner(Runner):
    """Runs a Flatten -> Dense(relu) ... -> Dense(softmax) stack in numpy."""

    runtime = "numpy-dense"
    module = "numpy"
    package = "numpy"
    suffixes = (".npz",)

    def __init__(self, path, threads=1):
        super().__init__(path, threads)
        with np.load(self.path, allow_pickle=False) as data:
            self.weights = [data[f"w{i}"] for i in range(len(data.files))]

    def _forward(self, x):
        x = np.asarray(x, np.float32).reshape(len(x), -1)
        layers = list(zip(self.weights[::2], self.weights[1::2], strict=True))
        for i, (kernel, bias) in enumerate(layers):
            x = x @ kernel + bias
            x = np.maximum(x, 0) if i < len(layers) - 1 else x
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    input_names, output_names = ["images"], ["probabilities"]

    def _predict_batch(self, inputs):
        return {"probabilities": self._forward(inputs["images"])}

    def _bind(self, inputs):
        self._bound_input = inputs["images"]

        def call():
            self._bound = self._forward(self._bound_input)

        return call

    def bound_outputs(self):
        return {"probabilities": self._bound}


def numpy_dense_worker(connection, job, path, data, handoff=None) -> None:
    """Compare's local worker with the numpy-dense runtime registered: a spawned worker starts
    with the registry as toolkit ships it and looks the runtime up by name, so the registry line
    is run there too (the child imports this module to unpickle this function)."""
    from toolkit.comparing.executors.local import measuring_worker
    from toolkit.runners import RUNNERS

    RUNNERS[NumpyDenseRunner.runtime] = NumpyDenseRunner
    measuring_worker(connection, job, path, data, handoff)


@pytest.fixture
def numpy_format(monkeypatch):
    """One registry line each, as a new module would add them (in compare's workers too)."""
    from toolkit.comparing import pipeline
    from toolkit.comparing.executors import LocalExecutor
    from toolkit.exporters import EXPORTERS
    from toolkit.runners import RUNNERS

    variant = ExportVariant(
        # numpy float32 vs TF's kernels: summation order only.
        "numpy",
        "float32",
        "model_dense.npz",
        "numpy-dense",
        Tolerance(max_abs_diff=1e-4),
        export_dense_npz,
    )
    monkeypatch.setitem(EXPORTERS, "numpy", (variant,))
    monkeypatch.setitem(RUNNERS, "numpy-dense", NumpyDenseRunner)
    monkeypatch.setattr(pipeline, "LocalExecutor", lambda: LocalExecutor(numpy_dense_worker))
    return variant


def test_a_registered_format_and_runtime_go_through_export_compare_and_report(
    numpy_format, trained_dir, tmp_path
):
    import toolkit

    out = tmp_path / "out"
    manifest = toolkit.export(out, model=trained_dir / "model.keras", formats=["numpy"])
    assert {a.name for a in manifest.artifacts} == {"model.keras", "model_dense.npz"}
    dense = manifest.artifact("model_dense.npz")
    assert dense.runtime == "numpy-dense" and dense.validation["max_abs_diff"] <= 1e-4
    report = toolkit.compare(out, runs=20, max_seconds=0.2)
    row = next(r for r in report.rows if r.artifact == "model_dense.npz")
    assert row.ok and row.runtime == "numpy-dense" and row.agreement >= 0.999
    assert row.accuracy == pytest.approx(report.reference_row.accuracy, abs=0.002)
    assert "model_dense.npz" in (out / "report" / "report.html").read_text()
    assert (
        "numpy-dense" in report.environment["versions"]
        or "numpy" in (report.environment["versions"])
    )


# --- arguments: checked where the options object is built --------------------------------------


@pytest.mark.parametrize(
    ("command", "keywords", "named"),
    [
        ("export", {"out": 123}, "--out"),
        ("compare", {"runtimes": "litert"}, "--runtime"),
        ("compare", {"runtimes": ["no-such-runtime"]}, "--runtime"),
        ("train", {"epochs": "3"}, "--epochs"),
        ("train", {"arch": "rnn"}, "--arch"),
        ("compare", {"baseline": {}}, "--baseline"),
        ("export", {"formats": "tflite"}, "--format"),
        ("export", {"formats": ["no-such-format"]}, "--format"),
        ("compare", {"limit": -1}, "--limit"),
        ("export", {"min_agreement": 2.0}, "--min-agreement"),
        ("export", {"max_accuracy_drop": float("inf")}, "--max-accuracy-drop"),
        ("compare", {"threads": 0}, "--threads"),
        ("predict", {"index": [-1]}, "--index"),
        ("report", {"colour": "red"}, "colour"),
    ],
)
def test_a_wrong_argument_is_a_usage_error_naming_the_option(tmp_path, command, keywords, named):
    import toolkit
    from toolkit.errors import ExitCode, ToolkitError

    with pytest.raises(ToolkitError) as raised:
        getattr(toolkit, command)(**{"out": tmp_path / "out", **keywords})
    assert raised.value.code == ExitCode.USAGE
    assert named in str(raised.value)
    assert not (tmp_path / "out").exists()  # refused before any work


def test_api_calls_leave_nothing_in_the_temp_folder(
    numpy_format, trained_dir, tmp_path, monkeypatch
):
    """TensorFlow's generated files and every scratch folder go into the call's private folder."""
    import tempfile

    import toolkit
    from toolkit.errors import ToolkitError

    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # what child processes read
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    out = tmp_path / "out"
    toolkit.export(out, model=trained_dir / "model.keras", formats=["numpy"])
    toolkit.compare(out, runs=5, max_seconds=0.1, runtimes=["numpy-dense"])
    with pytest.raises(ToolkitError):
        toolkit.report(tmp_path / "missing")
    # but the folder of multiprocessing's fork server (its socket), which lives as long as this
    # process and is removed when it exits (test_reliability checks that for the CLI)
    import multiprocessing.util

    server = Path(multiprocessing.util.get_temp_dir()).name
    assert sorted(p.name for p in temp.iterdir() if p.name != server) == []
