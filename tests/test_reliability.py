"""Reliability, round 2: a folder from someone else, a hostile file, a signal at the wrong moment.

Each section is one class of issue 14, fixed at one place: recovery (artifacts._committed_names),
atomic writes (artifacts.check_replaceable), signals (interrupts), readers (artifacts.open_regular
and read_capped), schemas (schema.check_fields), images (prediction.load_image), isolation
(evaluate.run_isolated), option bounds (cli), checkpoints (model._Checkpoint.load), private temp
folders (scratch.private_tempdir). Every file is made here, under tmp_path.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.cli_process import CliProcess
from tests.test_robustness import (
    assert_refused,
    copy_of,
    invoke,
    snapshot,
    staging_folders,
    toolkit_command,
)
from toolkit.errors import ExitCode, ToolkitError
from toolkit.store import COMMIT_NAME, STAGING_PREFIX

REPO = Path(__file__).resolve().parents[1]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")


def run_toolkit(*args, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """The CLI in its own process (for signals, encodings and temp folders), from this checkout."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        toolkit_command(*args), capture_output=True, text=True, env=environment, **kwargs
    )


# --- serious 1: recovery trusts only plain names inside --out ----------------------------------


def _crafted_staging(out: Path, names) -> Path:
    """A committed staging folder as a stranger could leave it: a COMMIT naming `names`."""
    staging = out / f"{STAGING_PREFIX}4242"
    staging.mkdir()
    (staging / COMMIT_NAME).write_text(json.dumps(names))
    return staging


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir(exist_ok=True)
    (victim / "precious.txt").write_text("keep me\n")
    return victim


HOSTILE_COMMITS = {
    # Each returns the COMMIT's names after planting what they point at.
    "parent path": lambda out, staging, victim: [f"../../{victim.name}/precious.txt"],
    "absolute path": lambda out, staging, victim: [str(victim / "precious.txt")],
    "hidden name": lambda out, staging, victim: [".toolkit.lock"],
    "nested path": lambda out, staging, victim: ["savedmodel/saved_model.pb"],
    "not a list": lambda out, staging, victim: {"model.keras": str(victim)},
    "a number": lambda out, staging, victim: [7],
    "NUL in a name": lambda out, staging, victim: ["model\0.keras"],
}


@pytest.mark.parametrize("case", list(HOSTILE_COMMITS))
def test_recovery_refuses_a_commit_list_naming_anything_but_plain_names(
    exported_dir, tmp_path, case
):
    out = copy_of(exported_dir, tmp_path)
    victim = _victim(tmp_path)
    staging = _crafted_staging(out, [])
    names = HOSTILE_COMMITS[case](out, staging, victim)
    (staging / COMMIT_NAME).write_text(json.dumps(names))
    shutil.copy(out / "model.keras", staging / "model.keras")
    before = snapshot(out)
    result = invoke("verify", "--out", out)
    assert_refused(result, 4, staging, "refusing to recover")
    assert (victim / "precious.txt").read_text() == "keep me\n"
    assert snapshot(out) == before and staging_folders(out) == [staging]


@pytest.mark.parametrize("command", ["verify", "compare", "export"])
def test_every_command_that_recovers_refuses_a_commit_leading_outside(
    exported_dir, tmp_path, command
):
    """The reported attack: a staged file named ../victim/... would have replaced the victim."""
    out = copy_of(exported_dir, tmp_path)
    victim = _victim(tmp_path)
    staging = _crafted_staging(out, ["../../victim/precious.txt"])
    before = snapshot(out)
    args = ["--format", "keras"] if command == "export" else []
    result = invoke(command, "--out", out, *args)
    assert_refused(result, 4, staging / COMMIT_NAME, "names entries toolkit never writes")
    assert (victim / "precious.txt").read_text() == "keep me\n"
    assert snapshot(out) == before


def test_recovery_refuses_a_staging_folder_that_is_a_link_outside(exported_dir, tmp_path):
    """A `.staging-*` symlink to a folder elsewhere: nothing there may be moved in or deleted."""
    out = copy_of(exported_dir, tmp_path)
    victim = _victim(tmp_path)
    (victim / COMMIT_NAME).write_text(json.dumps(["precious.txt"]))
    link = out / f"{STAGING_PREFIX}1"
    link.symlink_to(victim)
    before = snapshot(out)
    assert_refused(invoke("verify", "--out", out), 4, link, "not a staging folder toolkit wrote")
    assert sorted(p.name for p in victim.iterdir()) == [COMMIT_NAME, "precious.txt"]
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_recovery_refuses_a_staged_entry_that_is_a_link_or_a_fifo(exported_dir, tmp_path, kind):
    out = copy_of(exported_dir, tmp_path)
    victim = _victim(tmp_path)
    staging = _crafted_staging(out, ["model_int8.tflite", "manifest.json"])
    entry = staging / "model_int8.tflite"
    if kind == "symlink":
        entry.symlink_to(victim / "precious.txt")
    else:
        os.mkfifo(entry)
    before = snapshot(out)
    assert_refused(invoke("verify", "--out", out), 4, entry, "not a file toolkit wrote")
    assert snapshot(out) == before and (out / "model_int8.tflite").is_file()


def test_recovery_refuses_a_file_committed_over_a_folder(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    staging = _crafted_staging(out, ["savedmodel"])
    (staging / "savedmodel").write_text("a file where export writes a folder\n")
    before = snapshot(out)
    assert_refused(invoke("verify", "--out", out), 4, out / "savedmodel", "not a regular file")
    assert snapshot(out) == before


# --- serious 2: atomic writes never replace what is not a regular file -------------------------


def _mknod_null(path: Path) -> None:
    """A character device with /dev/null's numbers, made here so the real one is never at risk."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))


PLOT_TARGETS = {
    "fifo": (os.mkfifo, stat.S_ISFIFO),
    "folder": (os.mkdir, stat.S_ISDIR),
    "character device": (_mknod_null, stat.S_ISCHR),
}


@pytest.mark.parametrize("kind", list(PLOT_TARGETS))
def test_predict_plot_refuses_to_replace_what_is_not_a_regular_file(exported_dir, tmp_path, kind):
    if kind == "character device" and os.geteuid() != 0:
        pytest.skip("mknod of a character device needs root")
    make, is_kind = PLOT_TARGETS[kind]
    target = tmp_path / "figure.png"
    make(target)
    result = invoke("predict", "--index", "0", "--out", exported_dir, "--plot", target)
    assert_refused(result, 6, target, "exists and is not a regular file")
    assert is_kind(os.lstat(target).st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]  # no temporary left


@pytest.mark.parametrize("kind", ["fifo", "link to a fifo"])
def test_every_atomic_write_refuses_a_fifo_target(tmp_path, kind):
    from toolkit.fsio import write_json

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = fifo if kind == "fifo" else tmp_path / "report.json"
    if target != fifo:
        target.symlink_to(fifo)
    with pytest.raises(ToolkitError, match="exists and is not a regular file") as error:
        write_json(target, {"a": 1})
    assert error.value.code == ExitCode.IO
    assert stat.S_ISFIFO(os.stat(target).st_mode)


# --- serious 3: a signal is never lost ---------------------------------------------------------


class _SignalsInItsDestructor:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes: give it some
            pass


def test_a_signal_landing_in_a_destructor_is_not_lost():
    """Raised from the handler, it would be printed as "Exception ignored" and dropped."""
    from toolkit import interrupts

    before = signal.getsignal(signal.SIGTERM)
    with interrupts.deferred():
        _SignalsInItsDestructor()  # dropped at once: __del__ runs and the signal lands there
        with pytest.raises(KeyboardInterrupt):
            interrupts.check()
    assert signal.getsignal(signal.SIGTERM) is before
    interrupts.check()  # the flag does not outlive the command


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_export_ends_in_130_with_the_outputs_intact(exported_dir, tmp_path, signum):
    out = copy_of(exported_dir, tmp_path)
    before = snapshot(out)
    process = CliProcess("export", "--out", out, "--format", "tflite", "--no-figures")
    deadline = time.monotonic() + 120
    while not staging_folders(out) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert staging_folders(out), "export ended before it began staging"
    time.sleep(0.3)  # inside a conversion, where a raised KeyboardInterrupt used to get lost
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == ExitCode.INTERRUPTED, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert snapshot(out) == before and staging_folders(out) == []


# --- readers: a regular file, size-capped, or refused ------------------------------------------


def test_a_fifo_in_place_of_an_artifact_is_refused_not_waited_on(tmp_path):
    artifact = tmp_path / "model.tflite"
    os.mkfifo(artifact)
    result = invoke("predict", "--index", "0", "--artifact", artifact, "--no-verify")
    assert_refused(result, 4, artifact, "not a regular file")


@pytest.mark.parametrize("command", [["verify"], ["compare", "--runs", "5"]])
def test_a_fifo_in_place_of_a_listed_artifact_is_refused(exported_dir, tmp_path, command):
    out = copy_of(exported_dir, tmp_path)
    (out / "model_int8.tflite").unlink()
    os.mkfifo(out / "model_int8.tflite")
    result = invoke(*command, "--out", out)
    assert_refused(result, 4, out / "model_int8.tflite", "not a regular file")


def test_a_fifo_inside_a_savedmodel_folder_is_refused(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    os.mkfifo(out / "savedmodel" / "assets.fifo")
    assert_refused(invoke("verify", "--out", out), 4, out / "savedmodel", "not a regular file")


def test_a_fifo_in_place_of_the_manifest_is_refused(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    (out / "manifest.json").unlink()
    os.mkfifo(out / "manifest.json")
    result = invoke("verify", "--out", out)
    assert result.exit_code == 4 and "Traceback" not in result.output


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "oversized"])
def test_an_unreadable_baseline_is_a_usage_error(tmp_path, kind, monkeypatch):
    import toolkit.fsio

    baseline = tmp_path / "report.json"
    if kind == "fifo":
        os.mkfifo(baseline)
    elif kind == "/dev/zero":
        baseline = Path("/dev/zero")
    else:  # valid JSON, just too much of it
        monkeypatch.setattr(toolkit.fsio, "JSON_MAX_BYTES", 1000)
        schema = importlib.import_module("toolkit.report_schema")
        monkeypatch.setattr(schema, "JSON_MAX_BYTES", 1000)
        baseline.write_text(json.dumps({"rows": [], "pad": "x" * 2000}))
    result = invoke("compare", "--out", tmp_path / "missing", "--baseline", baseline)
    says = "larger than 1000 bytes" if kind == "oversized" else "not a regular file"
    assert_refused(result, 2, baseline, says)


# --- schemas: checked once at load, before anything is measured ---------------------------------


def _manifest_with(out: Path, change) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    change(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest))


def _set_artifact(key, value):
    return lambda manifest: manifest["artifacts"][1].__setitem__(key, value)


MALFORMED_MANIFESTS = {
    "path with NUL": (_set_artifact("path", "model\0.tflite"), "not a plain file name"),
    "path a number": (_set_artifact("path", 7), "field 'path' is not str"),
    "path null": (_set_artifact("path", None), "field 'path' is not str"),
    "name a list": (_set_artifact("name", ["a"]), "field 'name' is not str"),
    "size a string": (_set_artifact("size_bytes", "12"), "field 'size_bytes' is not int"),
    "size a bool": (_set_artifact("size_bytes", True), "field 'size_bytes' is not int"),
    "artifacts an object": (lambda m: m.__setitem__("artifacts", {}), "'artifacts' is not a list"),
    "artifact a string": (lambda m: m["artifacts"].__setitem__(0, "x"), "expected an object"),
    "class names numbers": (lambda m: m.__setitem__("class_names", [1, 2]), "class_names"),
    "training a list": (lambda m: m.__setitem__("training", []), "field 'training' is not dict"),
}


@pytest.mark.parametrize("case", list(MALFORMED_MANIFESTS))
def test_a_malformed_manifest_is_refused_at_load(exported_dir, tmp_path, case):
    change, says = MALFORMED_MANIFESTS[case]
    out = copy_of(exported_dir, tmp_path)
    _manifest_with(out, change)
    result = invoke("compare", "--out", out, "--runs", "5")
    assert_refused(result, 4, out / "manifest.json", "not a valid toolkit manifest", says)
    assert not (out / "report").exists()


def test_a_deeply_nested_manifest_is_refused(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    (out / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert_refused(invoke("verify", "--out", out), 4, out / "manifest.json", "RecursionError")


def test_a_symlink_loop_in_place_of_an_artifact_is_missing_not_a_crash(exported_dir, tmp_path):
    out = copy_of(exported_dir, tmp_path)
    (out / "model_int8.tflite").unlink()
    (out / "model_int8.tflite").symlink_to("model_int8.tflite")
    result = invoke("verify", "--out", out)
    assert result.exit_code == 4 and "model_int8.tflite: missing" in result.output


def _report(rows) -> dict:
    return {
        "threads": 1,
        "reference": "model.keras",
        "created": "2026-01-01T00:00:00+00:00",
        "environment": {"cpu": "x"},
        "class_names": ["a"],
        "test_images": 1,
        "settings": {"batch_size": 1},
        "rows": rows,
    }


GOOD_ROW = {
    "artifact": "model.keras",
    "format": "keras",
    "variant": "float32",
    "runtime": "keras",
    "size_bytes": 1,
    "accuracy": 0.5,
    "latency_ms": dict.fromkeys(("p50", "p90", "p99", "mean", "std", "min"), 1.0),
}

MALFORMED_BASELINES = {
    "rows not objects": _report([1, 2]),
    "rows an object": _report({"a": GOOD_ROW}),
    "environment a list": {**_report([GOOD_ROW]), "environment": ["cpu"]},
    "settings a string": {**_report([GOOD_ROW]), "settings": "batch 1"},
    "latency a list": _report([{**GOOD_ROW, "latency_ms": [1.0]}]),
    "accuracy a string": _report([{**GOOD_ROW, "accuracy": "0.5"}]),
    "threads null": {**_report([GOOD_ROW]), "threads": None},
}


@pytest.mark.parametrize("case", list(MALFORMED_BASELINES))
def test_a_malformed_baseline_is_refused_before_measuring(tmp_path, case):
    baseline = tmp_path / "report.json"
    baseline.write_text(json.dumps(MALFORMED_BASELINES[case]))
    result = invoke("compare", "--out", tmp_path / "missing", "--baseline", baseline)
    assert_refused(result, 2, baseline, "not a usable toolkit report.json")


def test_a_well_formed_baseline_still_loads(tmp_path):
    from toolkit.comparing.judging import load_baseline

    baseline = tmp_path / "report.json"
    baseline.write_text(json.dumps(_report([GOOD_ROW])))
    assert load_baseline(baseline).rows[0].p50 == 1.0


# --- images and arrays for predict --------------------------------------------------------------


def _png(width: int, height: int, *chunks: tuple[bytes, bytes], idat: bytes = b"") -> bytes:
    """A PNG with this header and these extra chunks; `idat` raw (possibly truncated) data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    body = b"".join(chunk(kind, data) for kind, data in chunks)
    pixels = idat or zlib.compress(b"\0" * (width + 1) * height)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + body
        + chunk(b"IDAT", pixels)
        + (chunk(b"IEND", b""))
    )


def _bmp(width: int, height: int) -> bytes:
    """A BMP whose header announces `width` x `height` 24-bit pixels, with none following."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def _npy_header(shape: tuple, descr: str = "<f4") -> bytes:
    """An .npy file with a valid header announcing `shape` and no data at all."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def _npz_named_npy(path: Path) -> None:
    np.savez(path.with_suffix(".npz"), np.zeros((28, 28)))
    path.with_suffix(".npz").rename(path)


def _good_png_truncated(path: Path) -> None:
    data = _png(28, 28, idat=zlib.compress(bytes(range(256)) * 4))
    path.write_bytes(data[: len(data) - 30])


HOSTILE_IMAGES = {
    # name: (file name, how to write it, what the refusal says)
    "30000x30000 png": (
        "bomb.png",
        lambda p: p.write_bytes(_png(30000, 30000, idat=zlib.compress(b"\0" * 64))),
        "too large",
    ),
    "oversized bmp header": ("bomb.bmp", lambda p: p.write_bytes(_bmp(200_000, 200_000)), "large"),
    "huge zTXt chunk": (
        "text.png",
        lambda p: p.write_bytes(
            _png(28, 28, (b"zTXt", b"k\0\0" + zlib.compress(b"a" * (20 << 20))))
        ),
        "not a readable image",
    ),
    "huge iCCP chunk": (
        "icc.png",
        lambda p: p.write_bytes(
            _png(28, 28, (b"iCCP", b"p\0\0" + zlib.compress(b"\0" * (20 << 20))))
        ),
        "not a readable image",
    ),
    "truncated png": ("cut.png", _good_png_truncated, "not a readable image"),
    "garbage png": ("junk.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\nxx"), "not a readable"),
    "npz named npy": ("array.npy", _npz_named_npy, "an .npz archive"),
    "int8 npy": (
        "int8.npy",
        lambda p: np.save(p, np.full((28, 28), -5, np.int8)),
        "int8 values from -5 to -5",
    ),
    "npy announcing 4 TB": (
        "huge.npy",
        lambda p: p.write_bytes(_npy_header((1_000_000, 1_000_000))),
        r"found shape \(1000000, 1000000\)",
    ),
    "npy header garbage": ("bad.npy", lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\xff"), "npy"),
    "fifo": ("pipe.png", os.mkfifo, "not a regular file"),
}


@pytest.mark.parametrize("case", list(HOSTILE_IMAGES))
def test_a_hostile_image_is_a_usage_error_with_its_reason(tmp_path, case, recwarn):
    from toolkit.prediction import load_image

    name, write, says = HOSTILE_IMAGES[case]
    path = tmp_path / name
    write(path)
    with pytest.raises(ToolkitError, match=says) as error:
        load_image(path)
    assert error.value.code == ExitCode.USAGE
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert [str(w.message) for w in recwarn.list] == []  # no raw library warning


def test_a_hostile_image_through_the_cli_is_one_line_and_exit_2(exported_dir, tmp_path):
    image = tmp_path / "bomb.png"
    image.write_bytes(_png(30000, 30000, idat=zlib.compress(b"\0" * 64)))
    result = invoke("predict", image, "--out", exported_dir)
    assert_refused(result, 2, image, "too large")
    assert "Warning" not in result.output


@pytest.mark.parametrize(
    "array",
    [
        np.full((28, 28), 100, np.int8),  # int8 pixels in range are pixels
        np.full((28, 28), 0.5, np.float32),  # 0..1 floats: predict takes them as scaled
        np.full((28, 28), 200, np.int64),
        np.full((1, 28, 28, 1), 7, np.uint8),  # size-1 axes fit a (28, 28) model
    ],
)
def test_a_usable_npy_still_loads(tmp_path, array):
    from toolkit.prediction import load_image

    np.save(tmp_path / "ok.npy", array)
    values, warning = load_image(tmp_path / "ok.npy")
    assert values.shape == (28, 28) and warning is None
    assert values[0, 0] == array.reshape(-1)[0] and values.dtype == array.dtype


# --- predict's inference isolated: a runtime that crashes is one line and exit 4 ---------------


class SegfaultingRunner:
    """Stands in for LiteRT on a hostile .tflite: the process dies of SIGSEGV while loading."""

    runtime = "litert"
    server_imports = ()

    def __init__(self, path, threads=1):
        os.kill(os.getpid(), signal.SIGSEGV)


class RefusingRunner:
    runtime = "litert"
    server_imports = ()

    def __init__(self, path, threads=1):
        raise ToolkitError(f"{path}: not a valid TFLite model", ExitCode.ARTIFACT)


def test_a_runtime_that_segfaults_in_predict_is_exit_4_not_139(tmp_path):
    from toolkit.prediction import predict_isolated

    path = tmp_path / "hostile.tflite"
    with pytest.raises(ToolkitError, match="worker crashed \\(SIGSEGV\\)") as error:
        predict_isolated(SegfaultingRunner, path, np.zeros((1, 28, 28), np.float32))
    assert error.value.code == ExitCode.ARTIFACT and str(path) in str(error.value)


def test_a_refusal_in_the_predict_worker_keeps_its_message_and_code(tmp_path):
    from toolkit.prediction import predict_isolated

    path = tmp_path / "hostile.tflite"
    with pytest.raises(ToolkitError, match="not a valid TFLite model") as error:
        predict_isolated(RefusingRunner, path, np.zeros((1, 28, 28), np.float32))
    assert error.value.code == ExitCode.ARTIFACT


def test_predict_runs_inference_in_a_worker(exported_dir, monkeypatch):
    """api.predict goes through predict_isolated: the CLI process never loads the runtime."""
    import toolkit.prediction

    calls = []
    real = toolkit.prediction.predict_isolated

    def recording(*args, **kwargs):
        calls.append(args[0].runtime)
        return real(*args, **kwargs)

    monkeypatch.setattr(toolkit.prediction, "predict_isolated", recording)
    artifact = exported_dir / "model_float32.onnx"
    result = invoke("predict", "--index", "0", "--out", exported_dir, "--artifact", artifact)
    assert result.exit_code == 0, result.output
    assert calls == ["onnxruntime"]


# --- option bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["x" * 300, "/".join(["d" * 200] * 25)], ids=["name", "path"])
def test_an_out_longer_than_the_system_limit_is_a_usage_error(tmp_path, path):
    result = invoke("verify", "--out", tmp_path / path)
    assert result.exit_code == ExitCode.USAGE, result.output
    text = " ".join(result.output.replace("│", " ").split())
    assert "Invalid value for '--out': longer than the system's limits" in text


def test_output_the_terminal_cannot_encode_is_escaped_not_a_crash(exported_dir, tmp_path):
    out = tmp_path / "Größe-ü"
    shutil.copytree(exported_dir, out)
    result = run_toolkit("verify", "--out", out, env={"PYTHONIOENCODING": "ascii"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Gr\\xf6\\xdfe-\\xfc" in result.stdout and "artifacts match" in result.stdout


# --- corrupt checkpoint fields ------------------------------------------------------------------

CORRUPT_STATES = {
    "not json": "{",
    "a list": "[]",
    "no epochs_done": {"history": {"loss": [1.0]}},
    "epochs_done a string": {"epochs_done": "1", "history": {"loss": [1.0]}},
    "epochs_done zero": {"epochs_done": 0, "history": {}},
    "history a list": {"epochs_done": 1, "history": [1.0]},
    "history of strings": {"epochs_done": 1, "history": {"loss": ["x"]}},
    "history too short": {"epochs_done": 2, "history": {"loss": [1.0]}},
    "weights outside": {"epochs_done": 1, "history": {"loss": [1.0]}, "weights": "../x.h5"},
    "weights missing": {"epochs_done": 1, "history": {"loss": [1.0]}, "weights": "gone.h5"},
}


@pytest.mark.parametrize("case", list(CORRUPT_STATES))
def test_a_corrupt_checkpoint_is_a_usage_error(tmp_path, case):
    from dataclasses import asdict

    from toolkit.model import TrainConfig
    from toolkit.model.checkpoint import Checkpoint as _Checkpoint

    config = TrainConfig()
    state = CORRUPT_STATES[case]
    if isinstance(state, dict):
        state = json.dumps({"weights": "epoch-1.weights.h5", "config": asdict(config), **state})
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "epoch-1.weights.h5").write_bytes(b"")
    (folder / "state.json").write_text(state)
    with pytest.raises(ToolkitError, match="corrupt checkpoint") as error:
        _Checkpoint(folder).load(None, config)  # refused before the model is touched
    assert error.value.code == ExitCode.USAGE


def test_a_corrupt_checkpoint_through_the_cli_is_one_line(trained_dir, tmp_path):
    out = copy_of(trained_dir, tmp_path)
    folder = out / "training" / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"epochs_done": "many"}))
    result = invoke(
        "train", "--out", out, "--resume", "--epochs", "1", "--limit", "100", "--no-figures"
    )
    assert_refused(result, 2, folder / "state.json", "corrupt checkpoint")


# --- workers: die with their parent, bounded memory --------------------------------------------


def _sleeping_worker(connection, pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)


def _hungry_worker(connection, megabytes: int) -> None:
    hoard = np.ones(megabytes << 17)  # float64: 8 bytes each, every page touched
    time.sleep(60)
    connection.send(("ok", hoard.size))


KILLED_PARENT = """
import sys
import tempfile
from tests.test_reliability import _sleeping_worker
from toolkit.process import run_isolated
run_isolated(_sleeping_worker, (sys.argv[1],), 300, 1e9)
"""


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] in "ZX"
    except OSError:
        return True


def test_a_worker_dies_with_its_parent_silently(tmp_path):
    pid_file = tmp_path / "worker.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", KILLED_PARENT, str(pid_file)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and parent.poll() is None, parent.stderr.read()
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    parent.kill()  # kill -9: no chance to stop its worker itself
    parent.wait(30)
    deadline = time.monotonic() + 10
    while not _gone(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(worker), f"worker {worker} outlived its parent"
    assert "Traceback" not in parent.stderr.read()


def test_a_worker_over_its_memory_limit_is_stopped_naming_the_limit():
    from toolkit.process import run_isolated

    start = time.monotonic()
    status, reason = run_isolated(_hungry_worker, (600,), 60, 200)
    assert (status, reason) == ("error", "stopped: used more than --max-memory 200 MB")
    assert time.monotonic() - start < 30


def test_compare_passes_max_memory_to_every_worker(exported_dir, tmp_path, monkeypatch):
    import toolkit.comparing.executors.local

    seen = []

    class NotMeasured:
        def __init__(self, target, args, timeout_seconds, max_memory_mb, preload=()):
            seen.append(max_memory_mb)

        def result(self, on_poll=lambda: None):
            return "error", "not measured here"

        def alive(self):
            return False

        def stop(self):
            pass

    monkeypatch.setattr(toolkit.comparing.executors.local, "IsolatedRun", NotMeasured)
    out = copy_of(exported_dir, tmp_path)
    result = invoke("compare", "--out", out, "--max-memory", "300", "--no-figures")
    assert result.exit_code == 4 and seen == [300] * len(seen) and seen


def test_a_keras_zip_bomb_is_refused_before_loading(tmp_path):
    model = tmp_path / "bomb.keras"
    with zipfile.ZipFile(model, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{}")
        with archive.open("model.weights.h5", "w") as member:
            for _ in range(64):
                member.write(bytes(1 << 20))
    assert model.stat().st_size < 1 << 20
    result = invoke("export", "--out", tmp_path / "out", "--model", model)
    assert_refused(result, 4, model, "zip bomb")
    assert not (tmp_path / "out").exists()


# --- a private temp folder per process ----------------------------------------------------------


def test_commands_leave_nothing_in_the_system_temp_folder(exported_dir, tmp_path):
    """TensorFlow removes its autograph files at exit, but a worker ends with os._exit (or is
    killed): a private folder per process, removed at the end, catches them all, on success and
    on error alike."""
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    env = {"TMPDIR": str(system_temp)}
    ok = run_toolkit("predict", "--index", "0", "--out", exported_dir, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    # compare's reference worker comes from a fork server, whose socket needs a short path
    short_temp = Path(tempfile.mkdtemp(prefix="tk-", dir="/tmp"))
    out = copy_of(exported_dir, tmp_path)
    compare = ["compare", "--out", out, "--runtime", "litert", "--limit", "20", "--runs", "5"]
    compared = run_toolkit(*compare, env={"TMPDIR": str(short_temp)})
    assert compared.returncode == 0, compared.stderr
    assert list(short_temp.iterdir()) == []
    short_temp.rmdir()
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    failed = run_toolkit("predict", "--index", "0", "--artifact", broken, "--no-verify", env=env)
    assert failed.returncode == 4, failed.stderr
    assert list(system_temp.iterdir()) == []


# --- siblings: links planted where toolkit writes -----------------------------------------------


@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_lock_file_that_is_a_link_or_a_fifo_is_never_written_through(
    exported_dir, tmp_path, kind
):
    from toolkit.store import LOCK_NAME

    out = copy_of(exported_dir, tmp_path)
    victim = _victim(tmp_path) / "precious.txt"
    (out / LOCK_NAME).unlink(missing_ok=True)
    if kind == "symlink":
        (out / LOCK_NAME).symlink_to(victim)
    else:
        os.mkfifo(out / LOCK_NAME)
    assert_refused(invoke("verify", "--out", out), 4, out / LOCK_NAME, "not toolkit's lock file")
    assert victim.read_text() == "keep me\n"


def test_an_atomic_write_never_writes_through_a_link_at_its_temporary_name(tmp_path):
    from toolkit.fsio import write_json

    victim = _victim(tmp_path) / "precious.txt"
    target = tmp_path / "out" / "history.json"
    target.parent.mkdir()
    (target.parent / f".history.tmp-{os.getpid()}.json").symlink_to(victim)
    write_json(target, {"a": 1})
    assert victim.read_text() == "keep me\n"
    assert json.loads(target.read_text()) == {"a": 1} and not target.is_symlink()


def _environment_worker(connection, key: str) -> None:
    connection.send(("ok", os.environ.get(key)))


def test_workers_start_with_one_blas_thread_and_leave_this_environment_alone(monkeypatch):
    from toolkit.process import run_isolated

    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert run_isolated(_environment_worker, ("OPENBLAS_NUM_THREADS",), 60, 1e9) == ("ok", "1")
    assert "OPENBLAS_NUM_THREADS" not in os.environ
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")  # the user's setting wins
    assert run_isolated(_environment_worker, ("OPENBLAS_NUM_THREADS",), 60, 1e9) == ("ok", "3")
