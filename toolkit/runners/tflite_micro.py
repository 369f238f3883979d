"""A .tflite file in TensorFlow Lite Micro: the real TFLM C++ interpreter, as firmware runs it.

TFLM keeps every tensor in one static arena whose size decides whether the model fits in a
microcontroller's RAM. It has no API for the size used, and an arena that is too small can
crash the process, so the size is measured and confirmed in subprocesses.
"""

from __future__ import annotations

import numpy as np

from toolkit.arrays import concatenated, zip_equal
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
        # The file's own table gives each input and output's name and index: TFLM has no names.
        inputs_io, outputs_io = tflite_io(self.path)
        self._inputs_io = {entry["name"]: (i, entry) for i, entry in enumerate(inputs_io)}
        self._outputs_io = {entry["name"]: (i, entry) for i, entry in enumerate(outputs_io)}
        self.input_names, self.output_names = list(self._inputs_io), list(self._outputs_io)
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
        for what, table in (("input", self._inputs_io), ("output", self._outputs_io)):
            for name, (_, entry) in table.items():
                if "quantization" in entry:
                    check_quantization(self.path, entry["quantization"]["scale"], f"{what} {name}")
        self._arena_bytes: int | None = None

    def _model_inputs(self, inputs: dict) -> list[list[tuple[int, np.ndarray]]]:
        """Per item, (index, tensor) for every input: TFLM has a fixed batch of one."""
        per_input = []
        for name, (index, entry) in self._inputs_io.items():
            detail = self.interpreter.get_input_details(index)
            shaped = np.asarray(inputs[name], dtype=np.float32).reshape((-1, *detail["shape"]))
            dtype = detail["dtype"]
            if np.issubdtype(dtype, np.integer):
                affine = entry["quantization"]
                shaped = quantize(shaped, affine["scale"], affine["zero_point"], dtype)
            per_input.append([(index, np.ascontiguousarray(x, dtype=dtype)) for x in shaped])
        return [list(item) for item in zip_equal(*per_input)]

    def _output_values(self) -> dict:
        values = {}
        for name, (index, entry) in self._outputs_io.items():
            raw = self.interpreter.get_output(index)
            if np.issubdtype(raw.dtype, np.integer):
                affine = entry["quantization"]
                values[name] = dequantize(raw, affine["scale"], affine["zero_point"])
            else:
                values[name] = raw.astype(np.float32)
        return values

    def _run(self, item: list[tuple[int, np.ndarray]]) -> None:
        for index, x in item:
            self.interpreter.set_input(x, index)
        self.interpreter.invoke()

    def _predict_batch(self, inputs):
        rows = []
        for item in self._model_inputs(inputs):
            self._run(item)
            rows.append(self._output_values())
        return concatenated(rows)

    def _bind(self, inputs):
        items = self._model_inputs(inputs)
        if len(items) == 1:
            for index, x in items[0]:
                self.interpreter.set_input(x, index)
            return self.interpreter.invoke

        def run_each():  # a batch on a microcontroller is one invoke per item
            for item in items:
                self._run(item)

        return run_each

    def bound_outputs(self):
        """The last bound item's outputs: TFLM runs a batch one item at a time, and collecting
        every item's outputs would add copies to the timed loop."""
        return {name: values.copy() for name, values in self._output_values().items()}

    def io_details(self):
        # Shapes as TFLM allocates them: a fixed batch of one.
        def described(table, details):
            return [
                {**entry, "shape": [int(d) for d in details(index)["shape"]]}
                for index, entry in table.values()
            ]

        return (
            described(self._inputs_io, self.interpreter.get_input_details),
            described(self._outputs_io, self.interpreter.get_output_details),
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
