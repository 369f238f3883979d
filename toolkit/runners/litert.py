"""A .tflite file in LiteRT's interpreter (ai-edge-litert), with XNNPACK as devices run it."""

from __future__ import annotations

import numpy as np

from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.runners.base import Runner, check_quantization, dequantize, in_batches, quantize


class LiteRTRunner(Runner):
    runtime = "litert"
    module = "ai_edge_litert.interpreter"
    package = "ai-edge-litert"
    suffixes = (".tflite",)
    _looped: np.ndarray | None = None  # outputs of a bound call made one item at a time

    def __init__(self, path, threads=1):
        super().__init__(path, threads)
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            reason = first_line(exc)
            raise ToolkitError(
                f"{self.path}: not a valid TFLite model: {reason}", ExitCode.ARTIFACT
            ) from None
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        for detail, what in ((self._input, "input"), (self._output, "output")):
            if np.issubdtype(detail["dtype"], np.integer):
                check_quantization(self.path, detail["quantization"][0], what)
        self._batch = int(self._input["shape"][0])
        # A file exported with a static batch of one is run as a device runs it: one call per
        # item (resizing it would fail on constants such as a Flatten's [1, K] shape).
        self._one_per_call = int(self._input["shape_signature"][0]) == 1

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            index = self._input["index"]
            self.interpreter.resize_tensor_input(index, [batch, *self._input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def _prepared(self, images: np.ndarray) -> np.ndarray:
        """`images` shaped and typed (quantized for an integer input) as the input tensor."""
        shaped = np.asarray(images, dtype=np.float32).reshape((-1, *self._input["shape"][1:]))
        dtype = self._input["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero_point = self._input["quantization"]
            shaped = quantize(shaped, scale, zero_point, dtype)
        return shaped.astype(dtype, copy=False)

    def _set_input(self, images: np.ndarray) -> None:
        prepared = self._prepared(images)
        self._resize(len(prepared))
        self.interpreter.set_tensor(self._input["index"], prepared)

    def _get_output(self) -> np.ndarray:
        values = self.interpreter.get_tensor(self._output["index"])
        if np.issubdtype(values.dtype, np.integer):
            return dequantize(values, *self._output["quantization"])
        return values.astype(np.float32, copy=False)

    def _predict_batch(self, images):
        self._set_input(images)
        self.interpreter.invoke()
        return self._get_output().copy()

    def predict(self, images):
        return in_batches(self._predict_batch, images, 1 if self._one_per_call else 256)

    def bind(self, images):
        self._looped = None
        if not self._one_per_call or len(images) == 1:
            self._set_input(images)
            return self.interpreter.invoke
        prepared = self._prepared(images)
        inputs = [prepared[i : i + 1] for i in range(len(prepared))]
        index, output = self._input["index"], self._output["index"]
        self._looped = np.empty((len(inputs), *self._output["shape"][1:]), self._output["dtype"])

        def run_each():  # each result read back, as an application would
            for i, x in enumerate(inputs):
                self.interpreter.set_tensor(index, x)
                self.interpreter.invoke()
                self._looped[i] = self.interpreter.get_tensor(output)[0]

        return run_each

    def bound_outputs(self):
        if self._looped is None:
            return self._get_output().copy()
        if np.issubdtype(self._looped.dtype, np.integer):
            return dequantize(self._looped, *self._output["quantization"])
        return self._looped.astype(np.float32)

    def extras(self):
        """How a batch was run: one call for all items, or one call per item (static batch 1)."""
        return {"batching": "one call per item" if self._one_per_call else "one call per batch"}

    def io_details(self):
        signature = self.interpreter.get_signature_list().get("serving_default", {})
        names = (signature.get("inputs", [None])[0], signature.get("outputs", [None])[0])

        def describe(detail, name):
            scale, zero_point = detail["quantization"]
            entry = {
                "name": name or detail["name"],
                # None for a dynamic dimension, as Keras and TF write it (LiteRT says -1).
                "shape": [None if d < 0 else int(d) for d in detail["shape_signature"]],
                "dtype": np.dtype(detail["dtype"]).name,
            }
            if scale:
                entry["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
            return entry

        return [describe(self._input, names[0])], [describe(self._output, names[1])]

    def close(self):
        self.interpreter = None
