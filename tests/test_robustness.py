"""Robustness: broken files, changed artifacts, killed runs, full disks, locks and bad options.

Every failure must end in one line naming the file and a documented exit code (toolkit/errors.py),
never a traceback, and must leave the earlier outputs intact.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.cli_process import CliProcess, run_cli
from toolkit.arrays import only
from toolkit.cli import app
from toolkit.errors import ExitCode, ToolkitError
from toolkit.store import COMMIT_NAME, LOCK_NAME, STAGING_PREFIX

runner = CliRunner()
LFS_POINTER = f"version https://git-lfs.github.com/spec/v1\noid sha256:{'ab' * 32}\nsize 123\n"
BROKEN = {  # how a model file arrives broken: download cut short, empty, garbage, LFS checkout
    "truncated": lambda good: good[: len(good) // 2],
    "empty": lambda good: b"",
    "random": lambda good: np.random.default_rng(0).bytes(4096),
    "lfs-pointer": lambda good: LFS_POINTER.encode(),
}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_refused(result, code: int, path: Path, *words: str) -> None:
    """Exit `code` with exactly one error line, naming `path` and saying `words`; no crash."""
    output = result.output
    assert result.exit_code == code, output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    assert str(path) in errors[0], output
    for word in words:
        assert word in errors[0], output


def copy_of(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(folder, out)
    return out


def snapshot(out: Path) -> dict[str, str]:
    """sha256 of every file outside staging folders (the lock file aside), by relative path."""
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
        and p.name != LOCK_NAME
        and not p.relative_to(out).parts[0].startswith(STAGING_PREFIX)
    }


def staging_folders(out: Path) -> list[Path]:
    return sorted(out.glob(STAGING_PREFIX + "*"))


# --- 1. models and artifacts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("truncated", "not a Keras archive"),
        ("empty", "not a Keras archive"),
        ("random", "not a Keras archive"),
        ("lfs-pointer", "git lfs pull"),
    ],
)
def test_export_refuses_a_broken_keras_file(exported_dir, tmp_path, kind, says):
    model = tmp_path / f"{kind}.keras"
    model.write_bytes(BROKEN[kind]((exported_dir / "model.keras").read_bytes()))
    out = tmp_path / "out"
    assert_refused(invoke("export", "--out", out, "--model", model), 4, model, says)
    assert not out.exists()  # refused before anything was created


def test_export_refuses_a_keras_archive_with_corrupted_weights(exported_dir, tmp_path):
    """A zip whose directory is intact but whose weights were overwritten (bad CRC)."""
    data = bytearray((exported_dir / "model.keras").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)
    model = tmp_path / "corrupted.keras"
    model.write_bytes(data)
    result = invoke("export", "--out", tmp_path / "out", "--model", model)
    assert_refused(result, 4, model, "cannot load as a Keras model", "CRC")


def test_export_refuses_a_legacy_h5_model_and_says_how_to_convert(tmp_path):
    model = tmp_path / "model.h5"
    model.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(512))
    result = invoke("export", "--out", tmp_path / "out", "--model", model)
    assert_refused(result, 4, model, "legacy HDF5", ".save('model.keras')")


def _rgb_model(keras):
    return [keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)]


def _five_classes(keras):
    return [keras.Input((28, 28)), keras.layers.Flatten(), keras.layers.Dense(5)]


def _lambda_layer(keras):
    return [keras.Input((28, 28)), keras.layers.Lambda(lambda x: x * 2), keras.layers.Flatten()]


def _two_inputs(keras):
    a, b = keras.Input((4,)), keras.Input((4,))
    return keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))


def _dynamic_width(keras):
    x = keras.Input((28, None, 1))
    return keras.Model(x, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))


def _integer_input(keras):
    x = keras.Input((8,), dtype="int32")
    return keras.Model(x, keras.layers.Dense(2)(keras.layers.Embedding(10, 4)(x)))


@pytest.mark.parametrize(
    ("layers", "says"),
    [
        # Python code inside the file: Keras's safe mode refuses it, so must we.
        (_lambda_layer, "`Lambda` layer"),
        # Free dimensions other than the batch: the refusal names the option that fixes them.
        (_dynamic_width, "has free dimensions (None, 28, None, 1); fix them with --input-shape"),
        (_integer_input, "is int32; expected a float input"),
    ],
)
def test_export_refuses_a_keras_model_it_cannot_serve(tmp_path, layers, says):
    import keras

    model = tmp_path / "other.keras"
    built = layers(keras)
    (keras.Sequential(built) if isinstance(built, list) else built).save(model)
    assert_refused(invoke("export", "--out", tmp_path / "out", "--model", model), 4, model, says)


@pytest.mark.parametrize(
    ("layers", "says"),
    [
        (_rgb_model, "data items have shape (28, 28) but the model expects (32, 32, 3)"),
        (_five_classes, "class_names: 10 class names for 5 classes"),
        # Several inputs are served (issue 25), but one image array cannot feed them.
        (_two_inputs, "the model has 2 inputs"),
    ],
)
def test_export_refuses_data_that_does_not_fit_the_model(tmp_path, dataset, layers, says):
    import keras

    model = tmp_path / "other.keras"
    built = layers(keras)
    (keras.Sequential(built) if isinstance(built, list) else built).save(model)
    result = invoke("export", "--out", tmp_path / "out", "--model", model)
    assert_refused(result, 3, dataset.source, says)


@pytest.mark.parametrize("kind", sorted(BROKEN))
@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("model_int8.tflite", "not a valid TFLite model"),
        ("model_float32.onnx", "not a valid ONNX model"),
        ("model.keras", "Keras"),
    ],
)
def test_predict_refuses_a_broken_artifact(exported_dir, tmp_path, source, says, kind):
    artifact = tmp_path / f"{kind}{Path(source).suffix}"
    artifact.write_bytes(BROKEN[kind]((exported_dir / source).read_bytes()))
    expected = "git lfs pull" if kind == "lfs-pointer" else says
    result = invoke("predict", "--index", "0", "--artifact", artifact, "--no-verify")
    assert_refused(result, 4, artifact, expected)


@pytest.mark.parametrize(
    ("pb", "says"),
    [(None, "not a SavedModel (no saved_model.pb)"), (b"\x08garbage", "cannot load SavedModel")],
)
def test_predict_refuses_a_broken_savedmodel_folder(exported_dir, tmp_path, pb, says):
    folder = tmp_path / "savedmodel"
    shutil.copytree(exported_dir / "savedmodel", folder)
    if pb is None:
        (folder / "saved_model.pb").unlink()
    else:
        (folder / "saved_model.pb").write_bytes(pb)
    result = invoke("predict", "--index", "0", "--artifact", folder, "--no-verify")
    assert_refused(result, 4, folder, says)


# ONNX external data: a tiny Flatten -> MatMul -> Softmax model whose weight lives in a file.


def _tiny_onnx(folder: Path, location: str, weights: np.ndarray, as_constant: bool = False):
    """An .onnx reading its (784, 10) weight from `location`, as an initializer or a Constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=list(weights.shape))
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(weights.nbytes))):
        weight.external_data.add(key=key, value=value)
    nodes = [
        helper.make_node("Reshape", ["images", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "W"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"]),
    ]
    initializers = [numpy_helper.from_array(np.array([-1, 784], np.int64), "shape")]
    if as_constant:
        nodes.insert(0, helper.make_node("Constant", [], ["W"], value=weight))
    else:
        initializers.append(weight)
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    return path


WEIGHTS = np.linspace(-0.01, 0.01, 7840, dtype=np.float32).reshape(784, 10)


def _outside(folder: Path) -> Path:
    (folder.parent / "outside.bin").write_bytes(WEIGHTS.tobytes())
    return folder.parent / "outside.bin"


def _inside(folder: Path, name: str = "weights.bin") -> str:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(WEIGHTS.tobytes())
    return name


def _symlink(folder: Path) -> str:
    (folder / "weights.bin").symlink_to(_outside(folder))
    return "weights.bin"


EXTERNAL_REFUSED = {
    "parent folder": lambda folder: "../" + _outside(folder).name,
    "absolute path": lambda folder: str(_outside(folder)),
    "symlink to outside": _symlink,
}


@pytest.mark.parametrize("as_constant", [False, True], ids=["initializer", "constant-node"])
@pytest.mark.parametrize("case", sorted(EXTERNAL_REFUSED))
def test_onnx_external_data_outside_the_folder_is_refused(tmp_path, case, as_constant):
    folder = tmp_path / "artifacts"
    folder.mkdir()
    path = _tiny_onnx(folder, EXTERNAL_REFUSED[case](folder), WEIGHTS, as_constant)
    result = invoke("predict", "--index", "0", "--artifact", path, "--no-verify")
    assert_refused(result, 4, path, "reads external data from", "refusing to load it")


@pytest.mark.parametrize("location", ["weights.bin", "data/weights.bin"])
def test_onnx_external_data_inside_the_folder_runs(tmp_path, dataset, location):
    from toolkit.data import normalize
    from toolkit.runners.onnxruntime import OnnxRuntimeRunner

    folder = tmp_path / "artifacts"
    folder.mkdir()
    path = _tiny_onnx(folder, _inside(folder, location), WEIGHTS)
    result = invoke("predict", "--index", "0", "--artifact", path, "--no-verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("test image 0:")
    images = normalize(dataset.test_images[:5])
    with OnnxRuntimeRunner(path) as onnx_runner:
        probabilities = only(onnx_runner.predict(images))
    logits = images.reshape(5, 784) @ WEIGHTS
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5)


def test_onnx_external_data_file_missing_is_refused(tmp_path):
    folder = tmp_path / "artifacts"
    folder.mkdir()
    path = _tiny_onnx(folder, "weights.bin", WEIGHTS)  # weights.bin never written
    result = invoke("predict", "--index", "0", "--artifact", path, "--no-verify")
    assert_refused(result, 4, path, "not a valid ONNX model", "does not exist")


# int8 TFLite quantization parameters


@pytest.mark.parametrize("scale", [0.0, -0.5, float("nan"), float("inf")])
def test_check_quantization_refuses_a_scale_that_is_not_positive_and_finite(tmp_path, scale):
    from toolkit.runners.base import check_quantization

    with pytest.raises(ToolkitError, match="invalid quantization of the input") as error:
        check_quantization(tmp_path / "m.tflite", scale, "input")
    assert error.value.code == ExitCode.ARTIFACT
    check_quantization(tmp_path / "m.tflite", 1 / 255, "input")  # a real scale passes


def _patch_scale(tflite: bytes, tensor: str, scale: float) -> bytes:
    """The same flatbuffer with the first scale of the model's input or output replaced.

    The scale vector is read in place (a numpy view of the bytearray), so no re-serialization.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(tflite)
    subgraph = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    index = subgraph.Inputs(0) if tensor == "input" else subgraph.Outputs(0)
    scales = subgraph.Tensors(index).Quantization().ScaleAsNumpy()
    assert scales[0] > 0  # the exported value, before the patch
    scales[0] = scale
    return bytes(data)


@pytest.mark.parametrize(
    ("tensor", "scale", "says"),
    [
        # LiteRT loads all of these. It runs the bad input scales and a NaN output scale
        # (garbage scores); a zero output scale fails only in invoke(), in the SOFTMAX kernel.
        ("input", 0.0, "invalid quantization of the input images (scale 0.0)"),
        ("input", -0.5, "invalid quantization of the input images (scale -0.5)"),
        ("output", 0.0, "invalid quantization of the output probabilities (scale 0.0)"),
        ("output", float("nan"), "invalid quantization of the output probabilities (scale nan)"),
    ],
)
def test_int8_tflite_with_an_invalid_scale_is_refused(exported_dir, tmp_path, tensor, scale, says):
    artifact = tmp_path / "model_int8.tflite"
    good = (exported_dir / "model_int8.tflite").read_bytes()
    artifact.write_bytes(_patch_scale(good, tensor, scale))
    result = invoke("predict", "--index", "0", "--artifact", artifact, "--no-verify")
    assert_refused(result, 4, artifact, says)


# Non-finite outputs in compare


def _fake_measure(bad: dict[str, float]):
    """A stand-in for compare's worker: uniform scores, or the value in `bad` for those
    artifacts, without starting a process."""

    class FakeRun:
        def __init__(self, target, args, timeout_seconds, max_memory_mb, preload=()):
            _, path, self.data = args[:3]
            self.value = bad.get(Path(path).name, 0.1)

        def result(self, on_poll=lambda: None):
            from toolkit.comparing.measurement import Measurement

            return "ok", Measurement(
                outputs={"probabilities": np.full((len(self.data), 10), self.value, np.float32)},
                latencies_ns=np.array([1_000, 2_000, 3_000]),
                throughput_ips=1000.0,
                load_ms=1.0,
                peak_rss_mb=100.0,
                extras={},
            ).to_bytes()

        def alive(self):
            return False

        def stop(self):
            pass

    return FakeRun


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_outputs_are_a_failed_row_not_a_score(exported_dir, dataset, monkeypatch, value):
    import toolkit.comparing.executors.local as local
    import toolkit.comparing.judging as judging
    import toolkit.comparing.pipeline as pipeline
    from toolkit.comparing.measurement import MeasureSettings
    from toolkit.store import load_manifest

    monkeypatch.setattr(local, "IsolatedRun", _fake_measure({"model_int8.tflite": value}))
    report = pipeline.measure_rows(
        exported_dir,
        load_manifest(exported_dir),
        dataset.test_images[:50],
        dataset.test_labels[:50],
        MeasureSettings(),
        runtimes=["keras", "tensorflow", "litert", "onnxruntime"],
    )
    rows = {row.artifact: row for row in report.rows}
    bad = rows.pop("model_int8.tflite")
    assert bad.status == "failed" and "NaN or infinity" in bad.error
    figures = ("accuracy", "agreement", "max_abs_diff", "snr_db", "latency_ms", "load_ms")
    assert all(getattr(bad, key) is None for key in figures)
    assert bad.key not in report.latency_samples
    # An Ethos-U file's row is Vela's estimate (status 'estimated'): nothing here runs it.
    assert all(row.ok or row.status == "estimated" for row in rows.values())
    failures = judging.gate_failures(report, 100.0, None)
    assert failures == [f"model_int8.tflite: could not be measured: {bad.error}"]


def test_compare_command_reports_non_finite_outputs_as_failed(exported_dir, tmp_path, monkeypatch):
    import toolkit.comparing.executors.local as local

    out = copy_of(exported_dir, tmp_path)
    bad = {"model_int8.tflite": float("nan")}
    monkeypatch.setattr(local, "IsolatedRun", _fake_measure(bad))
    gated = ["--max-accuracy-drop", "100", "--runtime", "litert", "--no-figures"]
    result = invoke("compare", "--out", out, *gated)
    assert result.exit_code == ExitCode.GATE, result.output
    assert "gate: model_int8.tflite: could not be measured: outputs contain NaN" in result.output
    report = json.loads((out / "report" / "report.json").read_text())
    rows = {row["artifact"]: row for row in report["rows"]}
    assert rows["model_int8.tflite"]["status"] == "failed"
    assert report["recommended"] != "model_int8.tflite"


def test_compare_in_which_no_artifact_runs_exits_4(exported_dir, tmp_path):
    """Every .tflite file replaced by bytes no runtime loads: each litert row fails for real, and
    the command says so with exit 4 (it was 0) after writing the report with the reasons."""
    out = copy_of(exported_dir, tmp_path)
    for path in out.glob("*.tflite"):
        path.write_bytes(b"not a flatbuffer" * 8)
    only = ["--no-verify", "--runtime", "litert", "--runs", "3", "--no-figures"]
    result = invoke("compare", "--out", out, *only)
    assert_refused(result, 4, out / "report" / "report.json", "no artifact could be measured")
    rows = json.loads((out / "report" / "report.json").read_text())["rows"]
    litert = [row["status"] for row in rows if row["runtime"] == "litert"]
    assert litert and set(litert) == {"failed"}


def test_compare_refuses_a_reference_with_non_finite_outputs(exported_dir, tmp_path, monkeypatch):
    import toolkit.comparing.executors.local as local

    out = copy_of(exported_dir, tmp_path)
    monkeypatch.setattr(local, "IsolatedRun", _fake_measure({"model.keras": np.nan}))
    result = invoke("compare", "--out", out)
    assert_refused(result, 4, out / "model.keras", "NaN")


# --- 2. compare and predict check the manifest first ----------------------------------------


def test_compare_refuses_a_missing_artifact_before_measuring(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    (out / "model_int8.onnx").unlink()
    result = invoke("compare", "--out", out, "--runs", "5")
    assert_refused(result, 4, out / "model_int8.onnx", "missing", "--no-verify")
    assert not (out / "report").exists()


@pytest.mark.parametrize("text", ["{not json", '{"artifacts": [{"name": 1}]}', ""])
def test_compare_refuses_a_broken_manifest(exported_dir, tmp_path, text):
    out = copy_of(exported_dir, tmp_path)
    (out / "manifest.json").write_text(text)
    result = invoke("compare", "--out", out)
    assert_refused(result, 4, out / "manifest.json", "not a valid toolkit manifest")


def test_predict_checks_the_checksum_before_loading_the_artifact(exported_dir, tmp_path):
    """Garbage in place of a listed file: the checksum speaks first; --no-verify reaches LiteRT."""
    out = copy_of(exported_dir, tmp_path)
    artifact = out / "model_float32.tflite"
    artifact.write_bytes(BROKEN["random"](b""))
    args = ["predict", "--index", "0", "--out", out, "--artifact", artifact]
    assert_refused(invoke(*args), 4, artifact, "changed since export", "--no-verify")
    assert_refused(invoke(*args, "--no-verify"), 4, artifact, "not a valid TFLite model")


def test_predict_no_verify_runs_a_changed_but_still_valid_artifact(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    artifact = out / "model_int8.tflite"
    with open(artifact, "ab") as f:
        f.write(b"\0" * 16)  # a flatbuffer ignores trailing bytes: LiteRT still loads it
    args = ["predict", "--index", "0", "--out", out, "--artifact", artifact]
    assert_refused(invoke(*args), 4, artifact, "changed since export")
    result = invoke(*args, "--no-verify")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("test image 0:")


def test_predict_refuses_a_changed_savedmodel_folder(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    (out / "savedmodel" / "assets").mkdir(exist_ok=True)
    (out / "savedmodel" / "assets" / "extra.txt").write_text("not from export\n")
    args = ["predict", "--index", "0", "--out", out, "--artifact", out / "savedmodel"]
    assert_refused(invoke(*args), 4, out / "savedmodel", "changed since export")


# --- 3. nothing half-written ----------------------------------------------------------------


def toolkit_command(*args) -> list[str]:
    return [sys.executable, "-m", "toolkit", *(str(a) for a in args)]


def slow_commit() -> None:
    """Makes this process's moves out of the staging folder each wait 0.5 s: the commit takes
    milliseconds, so without this no poll ever sees the folder mid-commit. Nothing else
    changes."""
    from toolkit.store import STAGING_PREFIX

    def replace(src, dst, _replace=os.replace):
        if STAGING_PREFIX in str(src) and STAGING_PREFIX not in str(dst):
            time.sleep(0.5)
        _replace(src, dst)

    os.replace = replace


KILL_MOMENTS = {
    # moment: (--format values, kill when this path exists in the staging folder, next command)
    "staging folder created": ([], "", "export"),
    "savedmodel half-written": ([], "savedmodel", "verify"),
    # Two formats keep these short; the commit moves a file, a folder and the manifest.
    "commit point written": (["keras", "savedmodel"], COMMIT_NAME, "verify"),
    "old savedmodel set aside": (["keras", "savedmodel"], ".old-savedmodel", "export"),
}


@pytest.mark.parametrize("moment", list(KILL_MOMENTS))
def test_export_killed_at_any_moment_leaves_a_verifiable_folder(exported_dir, tmp_path, moment):
    formats, trigger, then = KILL_MOMENTS[moment]
    out = copy_of(exported_dir, tmp_path)
    before = snapshot(out)
    # Without --no-figures a figure server would start, for plots drawn after every moment.
    args = ["export", "--out", out, "--no-figures", *(f"--format={f}" for f in formats)]
    process = CliProcess(*args, prepare=slow_commit if formats else None)
    seen, deadline = False, time.monotonic() + 120
    try:
        while not seen and process.poll() is None and time.monotonic() < deadline:
            seen = any((staging / trigger).exists() for staging in staging_folders(out))
            time.sleep(0.002)
    finally:
        process.kill()
        process.communicate(30)
    assert seen, f"export ended (exit {process.returncode}) before: {moment}"

    after = snapshot(out)
    assert set(after) <= set(before), "a file outside staging that no manifest lists"
    leftover = staging_folders(out)
    assert len(leftover) == 1
    if not (leftover[0] / COMMIT_NAME).is_file():
        assert after == before  # killed before the commit point: not one byte changed
    elif trigger == ".old-savedmodel":
        assert not any(name.startswith("savedmodel/") for name in after)

    if then == "export":  # the next export recovers or drops the leftover before its own work
        result = invoke("export", "--out", out, "--format", "keras")
        assert result.exit_code == 0, result.output
        assert staging_folders(out) == []
    result = invoke("verify", "--out", out)
    assert result.exit_code == 0, result.output
    assert staging_folders(out) == []
    assert set(snapshot(out)) == set(before)


def test_verify_finishes_a_commit_a_killed_export_had_started(exported_dir, tmp_path):
    """Killed between moving the old savedmodel aside and moving the new one in."""
    out = copy_of(exported_dir, tmp_path)
    staging = out / f"{STAGING_PREFIX}999999"
    staging.mkdir()
    # The new run's model_float32.tflite (here: other bytes) was already moved into place...
    new_tflite = (out / "model_float16.tflite").read_bytes()
    (out / "model_float32.tflite").write_bytes(new_tflite)
    manifest = json.loads((out / "manifest.json").read_text())
    for artifact in manifest["artifacts"]:
        if artifact["name"] == "model_float32.tflite":
            artifact["sha256"] = hashlib.sha256(new_tflite).hexdigest()
    (staging / "manifest.json").write_text(json.dumps(manifest))
    # ...the old savedmodel set aside, the new one still in staging.
    shutil.copytree(out / "savedmodel", staging / "savedmodel")
    os.replace(out / "savedmodel", staging / ".old-savedmodel")
    names = ["model_float32.tflite", "savedmodel", "manifest.json"]
    (staging / COMMIT_NAME).write_text(json.dumps(names))

    result = invoke("verify", "--out", out)
    assert result.exit_code == 0, result.output
    assert staging_folders(out) == []
    assert (out / "savedmodel" / "saved_model.pb").is_file()
    assert json.loads((out / "manifest.json").read_text()) == manifest


def test_verify_drops_an_uncommitted_staging_folder(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    before = snapshot(out)
    staging = out / f"{STAGING_PREFIX}999999"
    staging.mkdir()
    shutil.copy(out / "model_int8.tflite", staging / "model_float32.tflite")
    (staging / "manifest.json").write_text("{}")
    result = invoke("verify", "--out", out)
    assert result.exit_code == 0, result.output
    assert staging_folders(out) == [] and snapshot(out) == before


LOCK_HOLDER = """
import sys
from pathlib import Path
from toolkit.store import OutputLock
with OutputLock(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def locked_out(exported_dir, tmp_path):
    """A copy of the exported folder locked by another process; yields (folder, holder pid)."""
    out = copy_of(exported_dir, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        yield out, holder.pid
    finally:
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()


def test_export_waits_then_refuses_a_locked_output_naming_the_holder(locked_out):
    out, pid = locked_out
    before = snapshot(out)
    result = invoke("export", "--out", out, "--format", "keras")
    assert_refused(result, 6, out, f"in use by another toolkit command (pid {pid})")
    assert snapshot(out) == before and staging_folders(out) == []


@pytest.mark.parametrize(
    "args",
    [["verify"], ["compare", "--runs", "5"], ["train", "--epochs", "1", "--limit", "100"]],
    ids=lambda args: args[0],
)
def test_every_writer_refuses_a_locked_output(locked_out, monkeypatch, args):
    import toolkit.store

    out, pid = locked_out
    before = snapshot(out)
    short_wait = functools.partial(toolkit.store.OutputLock, wait_seconds=0.2)
    monkeypatch.setattr(toolkit.store, "OutputLock", short_wait)
    result = invoke(*args, "--out", out)
    assert_refused(result, 6, out, f"(pid {pid})")
    assert snapshot(out) == before


def limit_file_size(nbytes: int) -> None:
    """Makes files of this process larger than `nbytes` fail with EFBIG, like a full disk."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))


def toolkit_under_file_limit(limit: int, *args) -> subprocess.CompletedProcess:
    """Runs the CLI in a process whose files cannot grow past `limit` bytes: a full disk."""
    return run_cli(*args, prepare=functools.partial(limit_file_size, limit))


@pytest.mark.parametrize(
    ("format_", "fails_on"),
    [
        ("all", "model.keras"),  # the first variant: Python's shutil gets EFBIG
        ("savedmodel", "savedmodel"),  # TensorFlow's C++ writer reports it in its own words
    ],
)
def test_export_on_a_full_disk_exits_6_and_keeps_earlier_outputs(
    exported_dir, tmp_path, format_, fails_on
):
    out = copy_of(exported_dir, tmp_path)
    before = snapshot(out)
    export = ["export", "--out", out, "--format", format_, "--no-figures"]
    result = toolkit_under_file_limit(300_000, *export)
    assert result.returncode == ExitCode.IO, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {out / fails_on}: cannot write: File too large" in result.stderr
    assert snapshot(out) == before and staging_folders(out) == []
    assert invoke("verify", "--out", out).exit_code == 0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
        (RuntimeError("/o/.staging-1/x.tempstate1; File too large [Op:SaveV2]"), "File too large"),
        (OSError(errno.ENOENT, "No such file or directory"), None),
        (ValueError("Unsupported op: Erf"), None),
    ],
)
def test_disk_problems_are_told_apart_from_conversion_failures(error, reason):
    from toolkit.fsio import disk_problem

    assert disk_problem(error) == reason


def _checkpoint_and_model_sizes(tmp_path: Path) -> tuple[int, int]:
    """Bytes of a per-epoch checkpoint and of model.keras for the tutorial model (layout only)."""
    from toolkit.model import build_mlp, compile_model

    model = build_mlp()
    compile_model(model)
    model.fit(np.zeros((32, 28, 28), np.float32), np.zeros(32, np.int32), verbose=0)
    model.save_weights(tmp_path / "epoch.weights.h5")
    model.save(tmp_path / "model.keras")
    return (tmp_path / "epoch.weights.h5").stat().st_size, (tmp_path / "model.keras").stat().st_size


def test_train_on_a_full_disk_exits_6_and_keeps_the_previous_model(trained_dir, tmp_path):
    """Room for the checkpoint but not for model.keras: the atomic write must fail cleanly."""
    checkpoint, model = _checkpoint_and_model_sizes(tmp_path)
    assert checkpoint < model
    out = copy_of(trained_dir, tmp_path)
    before = (out / "model.keras").read_bytes()
    result = toolkit_under_file_limit(
        (checkpoint + model) // 2,
        *("train", "--out", out, "--epochs", "1", "--limit", "500", "--no-figures"),
    )
    assert result.returncode == ExitCode.IO, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: {out / 'model.keras'}: cannot write: File too large" in result.stderr
    assert (out / "model.keras").read_bytes() == before
    assert not list(out.rglob(".*tmp*"))


def test_train_on_a_very_full_disk_exits_6(trained_dir, tmp_path):
    out = copy_of(trained_dir, tmp_path)
    before = (out / "model.keras").read_bytes()
    result = toolkit_under_file_limit(
        64_000, "train", "--out", out, "--epochs", "1", "--limit", "100", "--no-figures"
    )
    assert (out / "model.keras").read_bytes() == before
    assert "Traceback" not in result.stderr
    assert result.returncode == ExitCode.IO, result.stderr


# --- 4. bad options ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "--threads", "0"],
        ["compare", "--runs", "0"],
        ["compare", "--batch-size", "0"],
        ["compare", "--max-seconds", "0"],
        ["compare", "--timeout", "0"],
        ["predict", "--index", "-1"],
        ["predict", "--index", "0", "--threads", "0"],
        ["predict", "--index", "0", "--top", "0"],
        ["export", "--calib-samples", "0"],
        ["export", "--opset", "12"],
        ["compare", "--threads", "99999999999"],
        ["predict", "--index", "0", "--threads", "99999999999"],
        ["train", "--seed", "-1"],
        ["train", "--seed", str(2**32)],
        ["compare", "--max-memory", "1"],
    ],
    ids=" ".join,
)
def test_an_out_of_range_option_is_a_usage_error(tmp_path, args):
    out = tmp_path / "out"
    result = invoke(*args, "--out", out)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert f"Invalid value for '{args[-2]}'" in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
