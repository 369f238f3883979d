"""A TF SavedModel through its serving_default signature, as TF Serving would call it."""

from __future__ import annotations

import numpy as np

from toolkit.errors import ExitCode, ToolkitError
from toolkit.formats.keras import set_tf_threads
from toolkit.process import TENSORFLOW_SERVER
from toolkit.runners.base import Runner


class SavedModelRunner(Runner):
    runtime = "tensorflow"
    module = "tensorflow"
    package = "tensorflow"
    suffixes = ("/",)
    server_imports = (TENSORFLOW_SERVER,)

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
        self._specs = self._signature.structured_input_signature[1]
        self.input_names = list(self._specs)
        self.output_names = list(self._signature.structured_outputs)

    def _shaped(self, inputs):
        return {
            name: np.asarray(array, np.float32).reshape((-1, *self._specs[name].shape[1:]))
            for name, array in inputs.items()
        }

    def _predict_batch(self, inputs):
        outputs = self._signature(**self._shaped(inputs))
        return {name: np.asarray(outputs[name]) for name in self.output_names}

    def _bind(self, inputs):
        import tensorflow as tf

        tensors = {name: tf.constant(array) for name, array in self._shaped(inputs).items()}

        def call():
            self._bound = self._signature(**tensors)

        return call

    def bound_outputs(self):
        return {name: np.asarray(self._bound[name], np.float32) for name in self.output_names}

    def io_details(self):
        outputs = self._signature.structured_outputs

        def entry(name, spec):
            return {"name": name, "shape": spec.shape.as_list(), "dtype": spec.dtype.name}

        return (
            [entry(name, spec) for name, spec in self._specs.items()],
            [entry(name, outputs[name]) for name in self.output_names],
        )
