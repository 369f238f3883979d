"""Imported by the fork server that starts the TensorFlow runtimes' workers (keras,
tensorflow): TensorFlow once, quiet and frozen, so each worker forks with it already imported."""

from toolkit.process import import_tensorflow

import_tensorflow()
import keras  # noqa: E402, F401 - after TensorFlow, as every runner imports them
