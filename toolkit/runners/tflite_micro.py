"""A .tflite file in TensorFlow Lite Micro: the real TFLM C++ interpreter, as firmware runs it.

TFLM keeps every tensor in one static arena whose size decides whether the model fits in a
microcontroller's RAM. It has no API for the size used, and an arena that is too small can
crash the process, so the size is measured and confirmed in subprocesses.
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
from toolkit.runners.base import (
    Runner,
    Unsupported,
    check_quantization,
    dequantize,
    in_batches,
    quantize,
)

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


def _interpreter_class():
    from tflite_micro.python.tflite_micro.runtime import Interpreter

    return Interpreter


def run_with_arena(path: str, arena_bytes: int) -> None:
    """Runs the model once on zeros with exactly `arena_bytes` of arena, then prints TFLM's
    arena usage on stderr. Meant for a subprocess: too small an arena may kill the process."""
    interpreter = _interpreter_class().from_file(path, arena_size=arena_bytes)
    detail = interpreter.get_input_details(0)
    interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
    interpreter.invoke()
    interpreter.get_output(0)
    sys.stderr.flush()
    interpreter.print_allocations()


def try_arena(path: Path, arena_bytes: int) -> tuple[bool, str]:
    """Runs the model with exactly `arena_bytes` of arena in a subprocess: (ran, its stderr)."""
    import toolkit

    source_root = str(Path(toolkit.__file__).resolve().parents[1])
    paths = [source_root, *filter(None, [os.environ.get("PYTHONPATH")])]
    code = "import sys; from toolkit.runners.tflite_micro import run_with_arena; "
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


def _failure(stderr: str) -> str:
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
            f"{path}: TFLM could not run it to measure its arena: {_failure(stderr)}",
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


class TFLiteMicroRunner(Runner):
    runtime = "tflite-micro"
    module = "tflite_micro"
    package = "tflite-micro"
    suffixes = (".tflite",)

    @classmethod
    def known_unsupported(cls, artifact):
        verdict = artifact.compatibility.get("tflite_micro", {})
        if verdict.get("runs") is False:
            return f"{artifact.path}: TFLM cannot run it: {verdict.get('reason')}"
        return None

    def __init__(self, path, threads=1):
        # TFLM is single-threaded by design: `threads` does not apply.
        super().__init__(path, threads)
        from toolkit.compatibility import tflite_io, tflm_compatibility

        verdict = tflm_compatibility(self.path)
        (self._input_io,), (self._output_io,) = tflite_io(self.path)
        self.model = self.path.read_bytes()
        if not verdict["runs"]:
            raise Unsupported(f"{self.path}: TFLM cannot run it: {verdict['reason']}")
        Interpreter = _interpreter_class()
        with captured_stderr() as stderr:
            try:
                self.interpreter = Interpreter.from_bytes(self.model, arena_size=HOST_ARENA_BYTES)
            except RuntimeError:
                reason = _failure(stderr())
                raise Unsupported(f"{self.path}: TFLM cannot prepare it: {reason}") from None
        self._input = self.interpreter.get_input_details(0)
        for entry, what in ((self._input_io, "input"), (self._output_io, "output")):
            if "quantization" in entry:
                check_quantization(self.path, entry["quantization"]["scale"], what)
        self._arena_bytes: int | None = None

    def _model_inputs(self, images: np.ndarray) -> list[np.ndarray]:
        """One input tensor per image: TFLM has a fixed batch of one and cannot resize."""
        shape = tuple(self._input["shape"])
        shaped = np.asarray(images, dtype=np.float32).reshape((-1, *shape))
        dtype = self._input["dtype"]
        if np.issubdtype(dtype, np.integer):
            affine = self._input_io["quantization"]
            shaped = quantize(shaped, affine["scale"], affine["zero_point"], dtype)
        return [np.ascontiguousarray(x, dtype=dtype) for x in shaped]

    def _output_values(self) -> np.ndarray:
        values = self.interpreter.get_output(0)
        if np.issubdtype(values.dtype, np.integer):
            affine = self._output_io["quantization"]
            return dequantize(values, affine["scale"], affine["zero_point"])
        return values.astype(np.float32)

    def _predict_batch(self, images):
        rows = []
        for x in self._model_inputs(images):
            self.interpreter.set_input(x, 0)
            self.interpreter.invoke()
            rows.append(self._output_values())
        return np.concatenate(rows)

    def predict(self, images):
        return in_batches(self._predict_batch, images)

    def bind(self, images):
        inputs = self._model_inputs(images)
        if len(inputs) == 1:
            self.interpreter.set_input(inputs[0], 0)
            return self.interpreter.invoke

        def run_each():  # a batch on a microcontroller is one invoke per image
            for x in inputs:
                self.interpreter.set_input(x, 0)
                self.interpreter.invoke()

        return run_each

    def bound_outputs(self):
        """The last bound item's outputs: TFLM runs a batch one item at a time, and collecting
        every item's outputs would add copies to the timed loop."""
        return self._output_values().copy()

    def io_details(self):
        # Shapes as TFLM allocates them: a fixed batch of one.
        output_shape = self.interpreter.get_output_details(0)["shape"]
        return (
            [{**self._input_io, "shape": [int(d) for d in self._input["shape"]]}],
            [{**self._output_io, "shape": [int(d) for d in output_shape]}],
        )

    def extras(self):
        """Arena (RAM) and model (flash) bytes: what decides whether it fits a microcontroller."""
        if self._arena_bytes is None:
            self._arena_bytes = measure_arena_bytes(self.path)
        return {"arena_bytes": self._arena_bytes, "flash_bytes": len(self.model)}

    def close(self):
        self.interpreter = None
