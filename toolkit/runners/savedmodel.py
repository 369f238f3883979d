"""A TF SavedModel through its serving_default signature, as TF Serving would call it."""

from __future__ import annotations

import numpy as np

from toolkit.errors import ExitCode, ToolkitError
from toolkit.formats.keras import set_tf_threads
from toolkit.runners.base import Runner, in_batches


class SavedModelRunner(Runner):
    runtime = "tensorflow"
    module = "tensorflow"
    package = "tensorflow"
    suffixes = ("/",)

    def __init__(self, path, threads=1):
        super().__init__(path, threads)
        from toolkit.process import import_tensorflow

        tf = import_tensorflow()
        set_tf_threads(threads)
        if not (self.path / "saved_model.pb").is_file():
            raise ToolkitError(
                f"{self.path}: not a SavedModel (no saved_model.pb)", ExitCode.ARTIFACT
            )
        try:
            self._loaded = tf.saved_model.load(str(self.path))
            self._signature = self._loaded.signatures["serving_default"]
        except Exception as exc:  # noqa: BLE001 - TF raises many types for a bad SavedModel
            raise ToolkitError(
                f"{self.path}: cannot load SavedModel: {type(exc).__name__}", ExitCode.ARTIFACT
            ) from None
        spec = self._signature.structured_input_signature[1]
        self.input_name, input_spec = next(iter(spec.items()))
        self.input_shape = tuple(input_spec.shape[1:])
        self.output_name = next(iter(self._signature.structured_outputs))

    def _run(self, x):
        return self._signature(**{self.input_name: x})[self.output_name]

    def predict(self, images):
        shaped = np.asarray(images, dtype=np.float32).reshape((-1, *self.input_shape))
        return in_batches(lambda x: np.asarray(self._run(x)), shaped)

    def bind(self, images):
        import tensorflow as tf

        tensor = tf.constant(np.asarray(images, np.float32).reshape((-1, *self.input_shape)))

        def call():
            self._bound = self._run(tensor)

        return call

    def bound_outputs(self):
        return np.asarray(self._bound, dtype=np.float32)

    def io_details(self):
        spec = self._signature.structured_input_signature[1][self.input_name]
        out = self._signature.structured_outputs[self.output_name]
        return (
            [{"name": self.input_name, "shape": spec.shape.as_list(), "dtype": spec.dtype.name}],
            [{"name": self.output_name, "shape": out.shape.as_list(), "dtype": out.dtype.name}],
        )
