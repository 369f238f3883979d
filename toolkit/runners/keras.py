"""The Keras reference model in TensorFlow."""

from __future__ import annotations

import numpy as np

from toolkit.formats.keras import set_tf_threads
from toolkit.runners.base import Runner, in_batches


class KerasRunner(Runner):
    runtime = "keras"
    module = "keras"
    package = "keras"
    suffixes = (".keras",)

    def __init__(self, path, threads=1):
        super().__init__(path, threads)
        from toolkit.formats.keras import load_keras_model
        from toolkit.process import import_tensorflow

        tf = import_tensorflow()

        set_tf_threads(threads)
        self.model = load_keras_model(self.path)
        self.input_shape = tuple(self.model.inputs[0].shape[1:])
        self._call = tf.function(lambda x: self.model(x, training=False), reduce_retracing=True)

    def _reshape(self, images: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(images, dtype=np.float32).reshape((-1, *self.input_shape))

    def predict(self, images):
        return in_batches(lambda x: np.asarray(self._call(self._reshape(x))), images)

    def bind(self, images):
        import tensorflow as tf

        tensor = tf.constant(self._reshape(images))

        def call():
            self._bound = self._call(tensor)

        return call

    def bound_outputs(self):
        return np.asarray(self._bound, dtype=np.float32)

    def io_details(self):
        # The model's own names: the input layer's, and the layer that produces the output.
        tensor_in, tensor_out = self.model.inputs[0], self.model.outputs[0]
        output_name = tensor_out._keras_history.operation.name
        return (
            [{"name": tensor_in.name, "shape": list(tensor_in.shape), "dtype": tensor_in.dtype}],
            [{"name": output_name, "shape": list(tensor_out.shape), "dtype": tensor_out.dtype}],
        )
