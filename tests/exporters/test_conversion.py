"""The converters run in a child process: a native crash, an abort or a hang there ends one
variant (left out with its reason), never the export.

A real converter crash needs an input that triggers a converter bug (issue 26's inputs that
overflow float32 now stop at the data check), so the tests crash the child for real in the
converter's place: `conversion_hooks` runs the child's own serving loop with one conversion
replaced by a call that dies in native code (a NULL read: SIGSEGV, or abort(): SIGABRT), as a
converter's C++ does. Nothing is mocked in the export or in the process handling.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.exporters.conversion_hooks import misbehaving_serve
from toolkit.exporters import conversion
from toolkit.exporters.conversion import ConverterCrash, ConverterProcess

ROOT = Path(__file__).resolve().parents[2]  # where `tests` imports from


def test_a_crash_abort_or_hang_ends_one_conversion_and_the_next_gets_a_new_process(monkeypatch):
    monkeypatch.setattr(conversion, "CONVERSION_TIMEOUT_SECONDS", 1.0)
    with ConverterProcess(warm=False, serve=misbehaving_serve) as converter:
        first = converter.convert("pid")
        with pytest.raises(ConverterCrash, match="invalid literal"):
            converter.convert("raise_")
        assert converter.convert("pid") == first  # a converter's exception keeps the process
        with pytest.raises(ConverterCrash, match="crashed \\(SIGABRT\\)"):
            converter.convert("abort")
        second = converter.convert("pid")
        assert second != first
        with pytest.raises(ConverterCrash, match="timed out after 1 s"):
            converter.convert("hang")
        third = converter.convert("pid")
        assert third not in (first, second)
        converter.ahead("abort")  # sent ahead: the pid request queued behind it is sent again
        converter.ahead("pid")
        with pytest.raises(ConverterCrash, match="crashed \\(SIGABRT\\)"):
            converter.convert("abort")
        assert converter.convert("pid") not in (first, second, third)
    for pid in (first, second):
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)


def _zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


# The export's own process with the converter's entry point replaced by crashing_serve, which
# works whether the converter process is forked (as in `toolkit export`) or spawned.
CRASHING_EXPORT = (
    "import sys; from toolkit.exporters import conversion; "
    "from tests.exporters.conversion_hooks import crashing_serve; "
    "conversion.serve_conversions = crashing_serve; "
    "import toolkit; sys.argv[0] = 'toolkit'; toolkit.main()"
)


def test_a_converter_that_crashes_natively_leaves_one_variant_out(tiny, tmp_path):
    """`toolkit export` exits 5 with the crashed variant left out and its reason, commits the
    others and leaves no temp folder behind (a new process for the next conversion: the test
    above). A command of its own: its converter process is forked, as a user's is."""
    from toolkit.store import load_manifest

    temp = tmp_path / "temp"
    temp.mkdir()
    data = tmp_path / "data.npz"
    np.savez(data, x_test=tiny.inputs[:100], x_train=tiny.inputs[:100])
    out = tmp_path / "out"
    args = ["export", "--out", str(out), "--model", str(tiny.folder / "model.keras")]
    args += ["--data", str(data), "--format", "tflite", "--calib-samples", "50", "--no-figures"]
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_EXPORT, *args],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(temp)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 5, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    manifest = load_manifest(out)
    assert [entry["artifact"] for entry in manifest.left_out] == ["model_int8.tflite"]
    reason = manifest.left_out[0]["reason"]
    assert "conversion failed" in reason and "crashed (SIGSEGV)" in reason
    assert {"model_float32.tflite", "model_float16.tflite", "model_dynamic_int8.tflite"} <= {
        artifact.name for artifact in manifest.artifacts
    }
    assert not (out / "model_int8.tflite").exists()
    assert list(temp.iterdir()) == []  # neither the export's nor the crashed child's folder
