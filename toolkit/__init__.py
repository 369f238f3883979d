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
    """Imports TensorFlow quietly (its CUDA-probing notes ignore TF_CPP_MIN_LOG_LEVEL) and
    frozen (`import_frozen`)."""
    with quiet_stderr(), without_matplotlib():
        tensorflow = import_frozen("tensorflow")
    skip_final_collection()  # TensorFlow's objects made it 0.7-0.9 s (measured on 2 cores)
    return tensorflow


def import_frozen(name: str):
    """Imports module `name` with garbage collection paused, then freezes every object alive
    (`gc.freeze`), so that later collections skip them.

    For a process's large first imports: TensorFlow's leaves 270,000 objects that live as long
    as the process, and each full collection scanned them all (0.12 s on 2 cores). Its import
    ran four of those and TF's converter runs one per conversion (`gc.collect()` in
    `TFLiteConverterV2.convert`): 1.1 s of an 8-artifact export. Only a module's first import
    does this; freezing later would also freeze the garbage cycles alive at that moment, for
    good (MobileNetV2's export peaked 470 MB higher that way). The ~1,200 unreachable objects
    TensorFlow's import leaves stay allocated.
    """
    import gc
    import importlib
    import sys

    if name in sys.modules:
        return sys.modules[name]
    enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextlib.contextmanager
def without_matplotlib():
    """TensorFlow imports all of Keras, whose image-gallery helpers import pyplot when they can:
    0.5 s of every TensorFlow import (measured on 2 cores) for plotting toolkit never asks Keras
    for; its figures are drawn in processes of their own. While TensorFlow imports, matplotlib
    is made unimportable, so Keras leaves those helpers without it; afterwards it imports as
    usual. A process that imported matplotlib already is left alone."""
    import sys

    if "matplotlib" in sys.modules:
        yield
        return
    sys.modules["matplotlib"] = None
    try:
        yield
    finally:
        if sys.modules.get("matplotlib", 0) is None:
            del sys.modules["matplotlib"]


# What every spawned process of toolkit's gets in its environment, unless the user set it: its
# numpy only reshapes and stacks (runtimes bring their own threads), and OpenBLAS starting a
# thread per core cost each one 0.05 s of CPU at numpy's import, while the others import too.
CHILD_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1"}


def start_child(process) -> None:
    """Starts a spawned multiprocessing `process` with CHILD_ENVIRONMENT in its environment;
    this process's own environment is as before once it has started."""
    added = {key: value for key, value in CHILD_ENVIRONMENT.items() if key not in os.environ}
    os.environ.update(added)
    try:
        process.start()
    finally:
        for key in added:
            os.environ.pop(key, None)


def skip_final_collection() -> None:
    """Interpreter shutdown runs one last garbage collection over every object alive: 0.3 s
    for compare (numpy, matplotlib, the report), 0.7-0.9 s after TensorFlow's import. At exit
    nothing is left to reclaim that the OS does not reclaim anyway: freeze them first. Only
    cyclic garbage is affected; atexit handlers and refcount frees still run."""
    import atexit
    import gc

    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def main() -> None:
    """The `toolkit` command. Its console script imports only this package: every process the
    command spawns re-runs that script first, and would otherwise import the CLI (typer, rich,
    0.2 s a process) just to measure a model or draw a figure."""
    from toolkit.cli import app

    app()


API = ("compare", "export", "predict", "report", "train", "verify")


def __getattr__(name: str):
    """The Python API, imported on first use (PEP 562): a worker or figure process, which
    imports `toolkit.evaluate` or `toolkit.figures`, then skips the exporters and their imports."""
    if name in API:
        from toolkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")


__all__ = [
    "compare",
    "export",
    "import_frozen",
    "import_tensorflow",
    "main",
    "predict",
    "quiet_stderr",
    "report",
    "skip_final_collection",
    "start_child",
    "train",
    "verify",
    "without_matplotlib",
]
