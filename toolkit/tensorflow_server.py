"""Imported by the fork server that starts the workers needing TensorFlow (the keras and
tensorflow runtimes', the converters', `predict`'s): TensorFlow once, quiet and frozen, so each
worker forks with it already imported."""

from toolkit.process import import_tensorflow

import_tensorflow()
import keras  # noqa: E402, F401 - after TensorFlow, as every runner imports them
