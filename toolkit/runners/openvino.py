"""An .onnx or .tflite file in OpenVINO's CPU plugin, as an Intel edge box runs it."""

from __future__ import annotations

import numpy as np

from toolkit.arrays import count, zip_equal
from toolkit.errors import ExitCode, ToolkitError
from toolkit.runners.base import (
    Runner,
    Unsupported,
    check_quantization,
    dequantize,
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
        self._inputs, self._outputs = self._ports()
        self.input_names, self.output_names = list(self._inputs), list(self._outputs)
        self._request = self.compiled.create_infer_request()
        # A static batch of one (the edge TFLite files) runs one call per item, as on a device.
        first = next(iter(self._inputs.values()))[0].get_partial_shape()[0]
        self._one_per_call = first.is_static and first.get_length() == 1
        self.predict_batch = 1 if self._one_per_call else 256
        self._looped: dict | None = None

    def _ports(self) -> tuple[dict, dict]:
        """(port, what the file says, position) by name, for the inputs and the outputs. A
        TFLite file's signature names and integer quantization are read from the file: OpenVINO
        keeps the integer tensors but exposes neither; its ports follow the file's order."""
        ports = list(self.compiled.inputs), list(self.compiled.outputs)
        if self.path.suffix != ".tflite":
            return tuple(
                {p.get_any_name(): (p, {}, i) for i, p in enumerate(group)} for group in ports
            )
        from toolkit.formats.tflite import tflite_io

        described = tflite_io(self.path)
        for what, entries in zip_equal(("input", "output"), described):
            for entry in entries:
                if "quantization" in entry:
                    scale = entry["quantization"]["scale"]
                    check_quantization(self.path, scale, f"{what} {entry['name']}")
        return tuple(
            {e["name"]: (p, e, i) for i, (p, e) in enumerate(zip_equal(group, found))}
            for group, found in zip_equal(ports, described)
        )

    def _feed(self, inputs: dict) -> dict:
        """Each input shaped and typed (quantized for an integer input) as its port, by port."""
        fed = {}
        for name, (port, from_file, position) in self._inputs.items():
            shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
            shaped = np.asarray(inputs[name], dtype=np.float32).reshape((-1, *shape[1:]))
            dtype = port.get_element_type().to_dtype()
            affine = from_file.get("quantization")
            if affine and np.issubdtype(dtype, np.integer):
                shaped = quantize(shaped, affine["scale"], affine["zero_point"], dtype)
            fed[position] = np.ascontiguousarray(shaped, dtype=dtype)
        return fed

    def _as_float(self, name: str, values: np.ndarray) -> np.ndarray:
        affine = self._outputs[name][1].get("quantization")
        if affine and np.issubdtype(values.dtype, np.integer):
            return dequantize(values, affine["scale"], affine["zero_point"])
        return values.astype(np.float32)

    def _predict_batch(self, inputs):
        results = self._request.infer(self._feed(inputs))
        outputs = self._outputs.items()
        return {name: self._as_float(name, results[port]) for name, (port, *_) in outputs}

    def _bind(self, inputs):
        import openvino as ov

        request = self.compiled.create_infer_request()
        self._bound = self._feed(inputs)  # the tensors share these buffers: keep them alive
        self._bound_request, self._looped = request, None
        if not self._one_per_call or count(inputs) == 1:
            for index, array in self._bound.items():
                request.set_input_tensor(index, ov.Tensor(array, shared_memory=True))
            return request.infer
        items = [
            [(k, ov.Tensor(a[i : i + 1], shared_memory=True)) for k, a in self._bound.items()]
            for i in range(count(inputs))
        ]
        outputs = [(name, position) for name, (_, _, position) in self._outputs.items()]
        self._looped = {
            name: np.empty((len(items), *port.get_shape()[1:]), port.get_element_type().to_dtype())
            for name, (port, *_) in self._outputs.items()
        }
        looped = self._looped

        def run_each():  # each result read back, as an application would
            for i, tensors in enumerate(items):
                for index, tensor in tensors:
                    request.set_input_tensor(index, tensor)
                request.infer()
                for name, index in outputs:
                    looped[name][i] = request.get_output_tensor(index).data[0]

        return run_each

    def bound_outputs(self):
        if self._looped is not None:
            return {name: self._as_float(name, values) for name, values in self._looped.items()}
        request = self._bound_request
        return {
            name: self._as_float(name, request.get_output_tensor(position).data).copy()
            for name, (_, _, position) in self._outputs.items()
        }

    def io_details(self):
        def describe(name, port, from_file, _position):
            shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
            return {
                "name": name,
                "shape": shape,
                "dtype": np.dtype(port.get_element_type().to_dtype()).name,
                **{k: v for k, v in from_file.items() if k == "quantization"},
            }

        return (
            [describe(name, *entry) for name, entry in self._inputs.items()],
            [describe(name, *entry) for name, entry in self._outputs.items()],
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
