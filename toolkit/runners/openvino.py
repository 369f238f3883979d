"""An .onnx or .tflite file in OpenVINO's CPU plugin, as an Intel edge box runs it."""

from __future__ import annotations

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

# Read back from the compiled model into the report row: what actually ran.
REPORTED_SETTINGS = (
    "INFERENCE_PRECISION_HINT",
    "INFERENCE_NUM_THREADS",
    "PERFORMANCE_HINT",
    "NUM_STREAMS",
    "ENABLE_CPU_PINNING",
)
# Messages of OpenVINO's front ends for a graph they read but cannot convert.
UNSUPPORTED_MARKERS = ("OpConversionFailure", "No translator found", "No conversion rule")


def compile_settings(threads: int) -> dict:
    """Left alone, OpenVINO runs float models in bf16 on CPUs that have it, on 2 threads: ask
    for float32 on `threads` threads, tuned for one request at a time like every other row.
    Its threads are not pinned to cores, as no other runtime's are: a pinned thread waits
    whenever another process holds its core, and two compiled models may be pinned apart."""
    return {
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False,
    }


def _reason(exc: Exception) -> str:
    """The line of OpenVINO's multi-line message that says what is wrong."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(exc).__name__])[-1]


class OpenVINORunner(Runner):
    runtime = "openvino"
    module = "openvino"
    package = "openvino"
    suffixes = (".onnx", ".tflite")

    def __init__(self, path, threads=1):
        super().__init__(path, threads)
        import openvino as ov

        from toolkit.formats.onnx import check_external_data

        if self.path.suffix == ".onnx":
            check_external_data(self.path)
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, "CPU", compile_settings(threads))
        except RuntimeError as exc:
            if any(marker in str(exc) for marker in UNSUPPORTED_MARKERS):
                raise Unsupported(
                    f"{self.path}: OpenVINO cannot convert it: {_reason(exc)}"
                ) from None
            raise ToolkitError(
                f"{self.path}: OpenVINO cannot read it: {_reason(exc)}", ExitCode.ARTIFACT
            ) from None
        self._input, self._output = self.compiled.input(0), self.compiled.output(0)
        self._input_file, self._output_file = self._tflite_io()
        self._request = self.compiled.create_infer_request()
        # A static batch of one (the edge TFLite files) runs one call per item, as on a device.
        first = self._input.get_partial_shape()[0]
        self._one_per_call = first.is_static and first.get_length() == 1
        self._looped: np.ndarray | None = None

    def _tflite_io(self) -> tuple[dict, dict]:
        """Signature names and integer quantization of a TFLite file's input and output:
        OpenVINO keeps the integer tensors but exposes neither, so they are read from the file."""
        if self.path.suffix != ".tflite":
            return {}, {}
        from toolkit.formats.tflite import tflite_io

        (inputs,), (outputs,) = tflite_io(self.path)
        for entry, what in ((inputs, "input"), (outputs, "output")):
            if "quantization" in entry:
                check_quantization(self.path, entry["quantization"]["scale"], what)
        return inputs, outputs

    def _feed(self, images: np.ndarray) -> np.ndarray:
        shape = [d.get_length() if d.is_static else -1 for d in self._input.get_partial_shape()]
        shaped = np.asarray(images, dtype=np.float32).reshape((-1, *shape[1:]))
        dtype = self._input.get_element_type().to_dtype()
        if (affine := self._input_file.get("quantization")) and np.issubdtype(dtype, np.integer):
            shaped = quantize(shaped, affine["scale"], affine["zero_point"], dtype)
        return np.ascontiguousarray(shaped, dtype=dtype)

    def _probabilities(self, values: np.ndarray) -> np.ndarray:
        affine = self._output_file.get("quantization")
        if affine and np.issubdtype(values.dtype, np.integer):
            return dequantize(values, affine["scale"], affine["zero_point"])
        return values.astype(np.float32)

    def predict(self, images):
        def run(batch):
            outputs = self._request.infer({0: self._feed(batch)})
            return self._probabilities(outputs[self._output]).copy()

        return in_batches(run, images, 1 if self._one_per_call else 256)

    def bind(self, images):
        import openvino as ov

        request = self.compiled.create_infer_request()
        self._bound = self._feed(images)  # the tensor shares this buffer: keep it alive
        self._bound_request, self._looped = request, None
        if not self._one_per_call or len(self._bound) == 1:
            request.set_input_tensor(ov.Tensor(self._bound, shared_memory=True))
            return request.infer
        items = [ov.Tensor(self._bound[i : i + 1], shared_memory=True) for i in range(len(images))]
        output = request.get_output_tensor(0)
        self._looped = np.empty((len(items), *output.shape[1:]), output.data.dtype)

        def run_each():  # each result read back, as an application would
            for i, item in enumerate(items):
                request.set_input_tensor(item)
                request.infer()
                self._looped[i] = request.get_output_tensor(0).data[0]

        return run_each

    def bound_outputs(self):
        if self._looped is not None:
            return self._probabilities(self._looped)
        return self._probabilities(self._bound_request.get_output_tensor(0).data).copy()

    def io_details(self):
        def describe(port, from_file):
            shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            return {
                "name": port.get_any_name(),
                "shape": shape,
                "dtype": np.dtype(port.get_element_type().to_dtype()).name,
                **{k: v for k, v in from_file.items() if k in ("name", "quantization")},
            }

        return (
            [describe(self._input, self._input_file)],
            [describe(self._output, self._output_file)],
        )

    def extras(self):
        """The settings OpenVINO actually compiled with (precision, threads, hint, streams)."""
        settings = {key: self.compiled.get_property(key) for key in REPORTED_SETTINGS}
        settings["INFERENCE_PRECISION_HINT"] = settings["INFERENCE_PRECISION_HINT"].to_string()
        batching = "one call per item" if self._one_per_call else "one call per batch"
        return {"openvino_settings": settings, "batching": batching}

    def close(self):
        self._request = None
        self.compiled = None
