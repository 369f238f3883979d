"""A private temp folder per process, removed when it ends (also on error and interrupt).

TensorFlow writes `__autograph_generated_file*.py` into the temp folder and never removes them;
converters leave scratch there too. Everything of one command goes under one folder instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

# (TMPDIR, tempfile.tempdir) as they were before each private folder now in use, outermost first
_outside: list[tuple[str | None, str | None]] = []


@contextlib.contextmanager
def private_tempdir():
    """Points `tempfile` and TMPDIR (read by C++ code and child processes) at a new folder under
    the system temp folder, and removes that folder afterwards."""
    folder = tempfile.mkdtemp(prefix=f"toolkit-{os.getpid()}-")
    _outside.append((os.environ.get("TMPDIR"), tempfile.tempdir))
    _point_at(folder, folder)
    try:
        yield folder
    finally:
        _point_at(*_outside.pop())
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def system_tempdir():
    """The temp folder as it was before this process's first private one, for what outlives
    that folder (a fork server, its socket and the workers it starts later)."""
    if not _outside:
        yield
        return
    current = (os.environ.get("TMPDIR"), tempfile.tempdir)
    _point_at(*_outside[0])
    try:
        yield
    finally:
        _point_at(*current)


def _point_at(env: str | None, tempdir: str | None) -> None:
    tempfile.tempdir = tempdir
    if env is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = env
