"""An .onnx file in ONNX Runtime's CPU execution provider."""

from __future__ import annotations

import numpy as np

from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.runners.base import Runner, in_batches


class OnnxRuntimeRunner(Runner):
    runtime = "onnxruntime"
    module = "onnxruntime"
    package = "onnxruntime"
    suffixes = (".onnx",)

    def __init__(self, path, threads=1):
        super().__init__(path, threads)
        import importlib.util

        import onnxruntime as ort

        # A device running only onnxruntime lacks the onnx package: there the host checked the
        # file before sending it (toolkit.compare.executors.ssh).
        if importlib.util.find_spec("onnx") is not None:
            from toolkit.formats.onnx import check_external_data

            check_external_data(self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle worker threads must not spin and steal the core another runtime is timed on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            # By path, never by bytes: ORT then resolves external data relative to the file.
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors
            reason = first_line(exc)
            raise ToolkitError(
                f"{self.path}: not a valid ONNX model: {reason}", ExitCode.ARTIFACT
            ) from None
        self._input = self.session.get_inputs()[0]
        self._output = self.session.get_outputs()[0]
        self._shape = [d if isinstance(d, int) else -1 for d in self._input.shape]

    def _feed(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images, dtype=np.float32).reshape((-1, *self._shape[1:]))

    def predict(self, images):
        def run(batch):
            return self.session.run([self._output.name], {self._input.name: self._feed(batch)})[0]

        return in_batches(run, images)

    def bind(self, images):
        import onnxruntime as ort

        binding = self.session.io_binding()
        self._bound = ort.OrtValue.ortvalue_from_numpy(self._feed(images))
        binding.bind_ortvalue_input(self._input.name, self._bound)
        # Output bound to a preallocated buffer too, so a timed call allocates nothing.
        shape = (len(images), *(d if isinstance(d, int) else 1 for d in self._output.shape[1:]))
        self._output_value = ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32)
        binding.bind_ortvalue_output(self._output.name, self._output_value)
        return lambda: self.session.run_with_iobinding(binding)

    def bound_outputs(self):
        return self._output_value.numpy().astype(np.float32)

    def io_details(self):
        def describe(arg):
            dtype = arg.type.removeprefix("tensor(").removesuffix(")")
            return {"name": arg.name, "shape": list(arg.shape), "dtype": dtype}

        return [describe(self._input)], [describe(self._output)]

    def close(self):
        self.session = None
