"""The Keras reference model in TensorFlow."""

from __future__ import annotations

import numpy as np

from toolkit.arrays import zip_equal
from toolkit.formats.keras import set_tf_threads
from toolkit.process import TENSORFLOW_SERVER
from toolkit.runners.base import Runner


class KerasRunner(Runner):
    runtime = "keras"
    module = "keras"
    package = "keras"
    suffixes = (".keras",)
    server_imports = (TENSORFLOW_SERVER,)

    def __init__(self, path, threads=1):
        super().__init__(path, threads)
        from toolkit.formats.keras import call_model, io_names, load_keras_model
        from toolkit.process import import_tensorflow

        tf = import_tensorflow()

        set_tf_threads(threads)
        self.model = load_keras_model(self.path)
        self.input_names, self.output_names = io_names(self.model)
        # Free dimensions (a model fixed by --input-shape at export): the data's shape as given.
        self._shapes = {
            name: None if None in tensor.shape[1:] else tuple(tensor.shape[1:])
            for name, tensor in zip_equal(self.input_names, self.model.inputs)
        }
        self._call = tf.function(lambda x: call_model(self.model, x), reduce_retracing=True)

    def _reshape(self, inputs):
        shaped = {}
        for name, array in inputs.items():
            array, shape = np.ascontiguousarray(array, dtype=np.float32), self._shapes[name]
            shaped[name] = array if shape is None else array.reshape((-1, *shape))
        return shaped

    def _predict_batch(self, inputs):
        return {k: np.asarray(v) for k, v in self._call(self._reshape(inputs)).items()}

    def _bind(self, inputs):
        import tensorflow as tf

        tensors = {name: tf.constant(array) for name, array in self._reshape(inputs).items()}

        def call():
            self._bound = self._call(tensors)

        return call

    def bound_outputs(self):
        return {k: np.asarray(v, dtype=np.float32) for k, v in self._bound.items()}

    def io_details(self):
        # The names every format gives the model (formats.keras.io_names), Keras's shapes.
        def entry(name, tensor):
            return {"name": name, "shape": list(tensor.shape), "dtype": tensor.dtype}

        return (
            [entry(n, t) for n, t in zip_equal(self.input_names, self.model.inputs)],
            [entry(n, t) for n, t in zip_equal(self.output_names, self.model.outputs)],
        )
