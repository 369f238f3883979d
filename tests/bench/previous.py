"""The toolkit as it was before this round of issues, unpacked from git history, so that part 5
times its `export` and `compare` against today's in the same turns (the issues' 0.6x and 0.7x
goals are ratios to it)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from io import BytesIO
from pathlib import Path

from tests.bench.runs import ROOT, BenchError

# The last commit before issues 9-15: the tutorial pipeline that converted once per variant.
PREVIOUS_COMMIT = "ced56f9"
# What it exported by default, and what today's export is asked for to do the same work.
DESKTOP_FORMATS = ["keras", "savedmodel", "tflite", "onnx"]


def unpack_previous(folder: Path, commit: str = PREVIOUS_COMMIT) -> Path:
    """`commit`'s toolkit package in `folder`; run it with `python -m toolkit` from there."""
    done = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit, "toolkit"],
        capture_output=True,
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise BenchError(f"cannot unpack commit {commit} of {ROOT}: {message[0]}")
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(done.stdout)) as archive:
        archive.extractall(folder, filter="data")
    return folder


def side_folder(out: Path, name: str) -> Path:
    """A folder beside OUT's artifacts holding only its trained model and training record."""
    folder = out / "bench" / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "training").mkdir(parents=True)
    shutil.copyfile(out / "model.keras", folder / "model.keras")
    metrics = out / "training" / "metrics.json"
    if metrics.exists():
        shutil.copyfile(metrics, folder / "training" / "metrics.json")
    return folder
