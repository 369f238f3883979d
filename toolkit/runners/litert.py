"""A .tflite file in LiteRT's interpreter (ai-edge-litert), with XNNPACK as devices run it."""

from __future__ import annotations

import numpy as np

from toolkit.arrays import count
from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.runners.base import Runner, check_quantization, dequantize, quantize


class LiteRTRunner(Runner):
    runtime = "litert"
    module = "ai_edge_litert.interpreter"
    package = "ai-edge-litert"
    suffixes = (".tflite",)
    _looped: dict | None = None  # outputs of a bound call made one item at a time

    def __init__(self, path, threads=1):
        super().__init__(path, threads)
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self._inputs, self._outputs = self._by_name()
            # Checked before allocating: a kernel's Prepare (SOFTMAX) rejects a zero output
            # scale with a message that names no tensor.
            for what, details in (("input", self._inputs), ("output", self._outputs)):
                for name, detail in details.items():
                    if np.issubdtype(detail["dtype"], np.integer):
                        scale = detail["quantization"][0]
                        check_quantization(self.path, scale, f"{what} {name}")
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = first_line(exc)
            raise ToolkitError(
                f"{self.path}: not a valid TFLite model: {reason}", ExitCode.ARTIFACT
            ) from None
        self._inputs, self._outputs = self._by_name()
        self.input_names, self.output_names = list(self._inputs), list(self._outputs)
        first = next(iter(self._inputs.values()))
        self._batch = int(first["shape"][0])
        # A file exported with a static batch of one is run as a device runs it: one call per
        # item (resizing it would fail on constants such as a Flatten's [1, K] shape).
        self._one_per_call = int(first["shape_signature"][0]) == 1
        self.predict_batch = 1 if self._one_per_call else 256

    def _by_name(self) -> tuple[dict, dict]:
        """Input and output details by signature name, in the subgraph's order: the signature
        maps names to tensors, so no output is ever taken by its position."""
        signature = self.interpreter._get_full_signature_list().get("serving_default")
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if not signature:  # a file made elsewhere: its tensor names
            return {d["name"]: d for d in inputs}, {d["name"]: d for d in outputs}
        names = {index: name for name, index in signature["inputs"].items()}
        names |= {index: name for name, index in signature["outputs"].items()}
        return (
            {names.get(d["index"], d["name"]): d for d in inputs},
            {names.get(d["index"], d["name"]): d for d in outputs},
        )

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            for detail in self._inputs.values():
                self.interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def _prepared(self, inputs: dict) -> dict:
        """Each input shaped and typed (quantized for an integer input) as its tensor."""
        prepared = {}
        for name, detail in self._inputs.items():
            shaped = np.asarray(inputs[name], dtype=np.float32).reshape((-1, *detail["shape"][1:]))
            dtype = detail["dtype"]
            if np.issubdtype(dtype, np.integer):
                scale, zero_point = detail["quantization"]
                shaped = quantize(shaped, scale, zero_point, dtype)
            prepared[name] = shaped.astype(dtype, copy=False)
        return prepared

    def _set_inputs(self, inputs: dict) -> None:
        prepared = self._prepared(inputs)
        self._resize(count(prepared))
        for name, array in prepared.items():
            self.interpreter.set_tensor(self._inputs[name]["index"], array)

    def _as_float(self, name: str, values: np.ndarray) -> np.ndarray:
        if np.issubdtype(values.dtype, np.integer):
            return dequantize(values, *self._outputs[name]["quantization"])
        return values.astype(np.float32)

    def _get_outputs(self) -> dict:
        return {
            name: self._as_float(name, self.interpreter.get_tensor(detail["index"]))
            for name, detail in self._outputs.items()
        }

    def _predict_batch(self, inputs):
        self._set_inputs(inputs)
        self.interpreter.invoke()
        return self._get_outputs()

    def _bind(self, inputs):
        self._looped = None
        if not self._one_per_call or count(inputs) == 1:
            self._set_inputs(inputs)
            return self.interpreter.invoke
        prepared = self._prepared(inputs)
        items = [
            [(self._inputs[n]["index"], a[i : i + 1]) for n, a in prepared.items()]
            for i in range(count(prepared))
        ]
        outputs = [(name, d["index"]) for name, d in self._outputs.items()]
        self._looped = {
            name: np.empty((len(items), *d["shape"][1:]), d["dtype"])
            for name, d in self._outputs.items()
        }
        interpreter, looped = self.interpreter, self._looped

        def run_each():  # each result read back, as an application would
            for i, tensors in enumerate(items):
                for index, x in tensors:
                    interpreter.set_tensor(index, x)
                interpreter.invoke()
                for name, index in outputs:
                    looped[name][i] = interpreter.get_tensor(index)[0]

        return run_each

    def bound_outputs(self):
        if self._looped is None:
            return self._get_outputs()
        return {name: self._as_float(name, values) for name, values in self._looped.items()}

    def extras(self):
        """How a batch was run: one call for all items, or one call per item (static batch 1)."""
        return {"batching": "one call per item" if self._one_per_call else "one call per batch"}

    def io_details(self):
        def describe(detail, name):
            scale, zero_point = detail["quantization"]
            entry = {
                "name": name,
                # None for a dynamic dimension, as Keras and TF write it (LiteRT says -1).
                "shape": [None if d < 0 else int(d) for d in detail["shape_signature"]],
                "dtype": np.dtype(detail["dtype"]).name,
            }
            if scale:
                entry["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
            return entry

        return (
            [describe(d, name) for name, d in self._inputs.items()],
            [describe(d, name) for name, d in self._outputs.items()],
        )

    def close(self):
        self.interpreter = None
