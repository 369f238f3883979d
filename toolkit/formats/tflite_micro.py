"""TFLite Micro's view of a .tflite file: the arena it needs, measured by running it.

Every run is a subprocess: too small an arena may kill the process running it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from toolkit.errors import ExitCode, ToolkitError

# The arena this host gives the interpreter while measuring and comparing: large enough for
# any model a microcontroller could hold; untouched pages cost no memory.
HOST_ARENA_BYTES = 64 << 20


ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


PROBE_SECONDS = 120


@contextlib.contextmanager
def captured_stderr():
    """Sends file descriptor 2 to a temporary file, since TFLM reports why it fails only there;
    yields a function returning what was written so far (C's stderr is unbuffered)."""
    with tempfile.TemporaryFile(mode="w+") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)

        def written() -> str:
            sink.seek(0)
            return sink.read()

        try:
            yield written
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def interpreter_class():
    from tflite_micro.python.tflite_micro.runtime import Interpreter

    return Interpreter


def run_with_arena(path: str, arena_bytes: int) -> None:
    """Runs the model once on zeros with exactly `arena_bytes` of arena, then prints TFLM's
    arena usage on stderr. Meant for a subprocess: too small an arena may kill the process."""
    interpreter = interpreter_class().from_file(path, arena_size=arena_bytes)
    detail = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
    interpreter.invoke()
    interpreter.get_output(0)
    sys.stderr.flush()
    interpreter.print_allocations()


def try_arena(path: Path, arena_bytes: int) -> tuple[bool, str]:
    """Runs the model with exactly `arena_bytes` of arena in a subprocess: (ran, its stderr)."""
    source_root = str(Path(__file__).resolve().parents[2])  # the folder holding toolkit/
    paths = [source_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    code = "import sys; from toolkit.formats.tflite_micro import run_with_arena; "
    code += "run_with_arena(sys.argv[1], int(sys.argv[2]))"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path), str(arena_bytes)],
            capture_output=True,
            text=True,
            timeout=PROBE_SECONDS,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {PROBE_SECONDS} s"
    if done.returncode < 0:
        return False, f"{done.stderr}\ncrashed with {signal.Signals(-done.returncode).name}"
    return done.returncode == 0, done.stderr


def failure_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def measure_arena_bytes(path: Path) -> int:
    """The arena TFLM needs for this model: its recording allocator's total, confirmed by a run
    with exactly that arena; when that run fails (the total leaves out some alignment), the
    smallest arena that runs, found by growing then bisecting in 16-byte steps. Every run is a
    subprocess (measured with TFLM's x86-64 build)."""
    ran, stderr = try_arena(path, HOST_ARENA_BYTES)
    found = ARENA_TOTAL.search(stderr)
    if not ran or not found:
        raise ToolkitError(
            f"{path}: TFLM could not run it to measure its arena: {failure_line(stderr)}",
            ExitCode.ARTIFACT,
        )
    reported = int(found.group(1))
    if try_arena(path, reported)[0]:
        return reported
    failing, step = reported, ARENA_ALIGNMENT
    while not try_arena(path, failing + step)[0]:
        failing, step = failing + step, step * 2
        if failing + step > HOST_ARENA_BYTES:
            raise ToolkitError(
                f"{path}: TFLM reported an arena of {reported} bytes, but no arena up to "
                f"{HOST_ARENA_BYTES} bytes runs it",
                ExitCode.ARTIFACT,
            )
    working = failing + step
    while working - failing > ARENA_ALIGNMENT:
        middle = failing + (working - failing) // 2 // ARENA_ALIGNMENT * ARENA_ALIGNMENT
        if try_arena(path, middle)[0]:
            working = middle
        else:
            failing = middle
    return working


ARENA_ALIGNMENT = 16  # TFLM aligns arena allocations to 16 bytes
