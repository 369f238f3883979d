"""A .tflite file in TensorFlow Lite Micro: the real TFLM C++ interpreter, as firmware runs it.

TFLM keeps every tensor in one static arena whose size decides whether the model fits in a
microcontroller's RAM. It has no API for the size used, and an arena that is too small can
crash the process, so the size is measured and confirmed in subprocesses.
"""

from __future__ import annotations

import numpy as np

from toolkit.formats.tflite_micro import (
    HOST_ARENA_BYTES,
    captured_stderr,
    failure_line,
    interpreter_class,
    measure_arena_bytes,
)
from toolkit.runners.base import (
    Runner,
    Unsupported,
    check_quantization,
    dequantize,
    in_batches,
    quantize,
)


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
        from toolkit.formats.tflite import tflite_io, tflm_compatibility

        verdict = tflm_compatibility(self.path)
        (self._input_io,), (self._output_io,) = tflite_io(self.path)
        self.model = self.path.read_bytes()
        if not verdict["runs"]:
            raise Unsupported(f"{self.path}: TFLM cannot run it: {verdict['reason']}")
        Interpreter = interpreter_class()
        with captured_stderr() as stderr:
            try:
                self.interpreter = Interpreter.from_bytes(self.model, arena_size=HOST_ARENA_BYTES)
            except RuntimeError:
                reason = failure_line(stderr())
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
        return {
            "arena_bytes": self._arena_bytes,
            "flash_bytes": len(self.model),
            "batching": "one call per item",
        }

    def close(self):
        self.interpreter = None
