"""Edge-deployment model conversion toolkit: train, export, compare."""

import contextlib
import os

# TensorFlow reads these at import time; setting them here (cheap, no TF import) keeps every
# entry point quiet without each module having to remember.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"


@contextlib.contextmanager
def quiet_stderr():
    """Mutes file descriptor 2: TF, LiteRT and the converters print C++ notes there directly."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Imports TensorFlow quietly: its CUDA-probing notes ignore TF_CPP_MIN_LOG_LEVEL."""
    with quiet_stderr():
        import tensorflow
    return tensorflow


# The Python API; imported last because it imports modules that use the helpers above.
from toolkit.api import compare, export, predict, report, train, verify  # noqa: E402

__all__ = [
    "compare",
    "export",
    "import_tensorflow",
    "predict",
    "quiet_stderr",
    "report",
    "train",
    "verify",
]
