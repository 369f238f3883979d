"""The session's shared folders: a tiny trained tutorial model, and it exported to every
registered format. Each is built once per test run, under a file lock, by whoever asks first:
a pytest-xdist worker's fixture (tests/conftest.py), or `python -m tests.shared_builds ROOT`,
which the conftest starts in the background when the session starts, so that the workers find
them built instead of one building while the others wait."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

TINY = {"limit": 2000, "epochs": 2}


def shared_folder(root: Path, name: str, build: Callable[[Path], None]) -> Path:
    """root/NAME.shared/out, filled by `build` unless it already is; a build that fails leaves
    nothing, and the next asker retries."""
    shared = root / f"{name}.shared"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even on an error
        if not shared.is_dir():
            staging = root / f"{name}.building-{os.getpid()}"
            shutil.rmtree(staging, ignore_errors=True)
            build(staging / "out")
            staging.rename(shared)
    return shared / "out"


def build_trained(out: Path) -> None:
    from toolkit.data import load_dataset
    from toolkit.model import TrainConfig, save_training_outputs, train
    from toolkit.process import import_tensorflow

    import_tensorflow()
    dataset = load_dataset()
    result = train(dataset, TrainConfig(**TINY), out / "training" / "checkpoint")
    save_training_outputs(out, dataset, result)


def build_exported(out: Path, trained: Path) -> None:
    from toolkit.exporting.pipeline import export_artifacts
    from toolkit.options import ExportOptions

    shutil.copytree(trained, out)
    export_artifacts(ExportOptions(out=out))


def build_all(root: Path) -> None:
    trained = shared_folder(root, "trained", build_trained)
    shared_folder(root, "exported", lambda out: build_exported(out, trained))


if __name__ == "__main__":
    build_all(Path(sys.argv[1]))
