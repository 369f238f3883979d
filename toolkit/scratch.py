"""A private temp folder per process, removed when it ends (also on error and interrupt).

TensorFlow writes `__autograph_generated_file*.py` into the temp folder and never removes them;
converters leave scratch there too. Everything of one command goes under one folder instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def private_tempdir():
    """Points `tempfile` and TMPDIR (read by C++ code and child processes) at a new folder under
    the system temp folder, and removes that folder afterwards."""
    folder = tempfile.mkdtemp(prefix=f"toolkit-{os.getpid()}-")
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = tempfile.tempdir = folder
    try:
        yield folder
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(folder, ignore_errors=True)
