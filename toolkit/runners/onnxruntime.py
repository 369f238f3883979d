"""An .onnx file in ONNX Runtime's CPU execution provider."""

from __future__ import annotations

import numpy as np

from toolkit.arrays import zip_equal
from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.runners.base import Runner


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
        # file before sending it (toolkit.comparing.executors.ssh).
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
        self._inputs = {arg.name: arg for arg in self.session.get_inputs()}
        self._outputs = {arg.name: arg for arg in self.session.get_outputs()}
        self.input_names, self.output_names = list(self._inputs), list(self._outputs)

    def _feed(self, inputs: dict) -> dict:
        fed = {}
        for name, arg in self._inputs.items():
            shape = [d if isinstance(d, int) else -1 for d in arg.shape[1:]]
            fed[name] = np.ascontiguousarray(inputs[name], dtype=np.float32).reshape((-1, *shape))
        return fed

    def _predict_batch(self, inputs):
        values = self.session.run(self.output_names, self._feed(inputs))
        return dict(zip_equal(self.output_names, values))

    def _bind(self, inputs):
        import onnxruntime as ort

        binding = self.session.io_binding()
        fed = self._feed(inputs)
        self._bound = {name: ort.OrtValue.ortvalue_from_numpy(x) for name, x in fed.items()}
        for name, value in self._bound.items():
            binding.bind_ortvalue_input(name, value)
        # Outputs bound to preallocated buffers too, so a timed call allocates nothing; their
        # free dimensions come from one call.
        first = self.session.run(self.output_names, fed)
        shapes = {name: v.shape for name, v in zip_equal(self.output_names, first)}
        self._output_values = {
            name: ort.OrtValue.ortvalue_from_shape_and_type(shapes[name], np.float32)
            for name in self.output_names
        }
        for name, value in self._output_values.items():
            binding.bind_ortvalue_output(name, value)
        return lambda: self.session.run_with_iobinding(binding)

    def bound_outputs(self):
        return {name: v.numpy().astype(np.float32) for name, v in self._output_values.items()}

    def io_details(self):
        def describe(arg):
            dtype = arg.type.removeprefix("tensor(").removesuffix(")")
            return {"name": arg.name, "shape": list(arg.shape), "dtype": dtype}

        return (
            [describe(arg) for arg in self._inputs.values()],
            [describe(arg) for arg in self._outputs.values()],
        )

    def close(self):
        self.session = None
