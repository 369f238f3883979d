"""The converters (TFLite's, ONNX Runtime's quantizer) run in a child process of the export.

A converter is native code: on some inputs it crashes (SIGSEGV), aborts or hangs, and in the
export's own process that would end the whole command with no message, its private temp folder
left behind and every other variant lost. In the child, it ends one variant: that variant is
left out with the reason and a new child serves the next. One child serves every conversion of
an export, because a TensorFlow import costs more than a conversion: it is forked from the
export once TensorFlow is imported (`fork_safe`), else from the fork server that imported it
(in a process with threads, as the API's caller may be), and converts ahead while the export
validates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit.arrays import packed
from toolkit.errors import first_line
from toolkit.process import (
    TENSORFLOW_SERVER,
    RequestWorker,
    default_max_memory_mb,
    import_tensorflow,
    quiet_stderr,
)

# A conversion that takes longer is taken for hung. Generous: a large model's int8 calibration
# is long, and an export has no timeout option of its own.
CONVERSION_TIMEOUT_SECONDS = 3600.0
START_TIMEOUT_SECONDS = 600.0  # the process's imports, on a machine busy with others
CALIBRATION_FILE = "calibration.npy"  # in the export's build folder, read by the child


class ConverterCrash(RuntimeError):
    """The converter's process ended (crash, abort, hang, memory) or the converter raised."""


class SharedCache:
    """Values built once per converter process (a loaded SavedModel, the calibration), as
    `ExportContext.shared` builds them once per export."""

    def __init__(self) -> None:
        self._values: dict[str, object] = {}

    def shared(self, key: str, build: Callable[[], object]):
        if key not in self._values:
            self._values[key] = build()
        return self._values[key]


def load_calibration(path: str, shared: Callable) -> object:
    """The calibration sample written by `calibration_file`: one array, or arrays by input name
    for a model with several inputs (stored as one structured array)."""

    def load():
        items = np.load(path, mmap_mode="r", allow_pickle=False)
        if items.dtype.names is None:
            return items
        return {name: np.ascontiguousarray(items[name]) for name in items.dtype.names}

    return shared(f"calibration:{path}", load)


def _tflite(shared: Callable, savedmodel: str, variant: str, calibration: str) -> bytes:
    from toolkit.exporters.tflite import tflite_from_savedmodel

    images = load_calibration(calibration, shared) if calibration else None
    return tflite_from_savedmodel(Path(savedmodel), variant, images, shared)


def _onnx_prepared(shared: Callable, source: str, target: str) -> None:
    """ORT's quantization pre-processing (see `exporters.onnx.shared_prepared_onnx`)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(source, target, skip_symbolic_shape=True)


def _qdq(shared: Callable, prepared: str, target: str, calibration: str, reduce_range: bool):
    from toolkit.quantization.qdq import quantize_qdq

    images = load_calibration(calibration, shared)
    quantize_qdq(Path(prepared), Path(target), images, reduce_range=reduce_range)


# What a converter process does, by request name: (shared, *plain arguments) -> bytes or None.
CONVERSIONS: dict[str, Callable] = {
    "tflite": _tflite,
    "onnx_prepared": _onnx_prepared,
    "qdq": _qdq,
}


def serve_conversions(connection, warm: bool = True) -> None:
    """The converter process: imports TensorFlow (when `warm`) and says ("ready", None), then
    answers each request (name, args) with ("ok", result) or ("failed", one line) until the
    export closes the pipe."""
    if warm:
        import_tensorflow()
    connection.send(("ready", None))
    cache = SharedCache()
    while True:
        try:
            name, args = connection.recv()
        except EOFError:
            return
        try:
            with quiet_stderr():
                answer = ("ok", CONVERSIONS[name](cache.shared, *args))
        except Exception as exc:  # noqa: BLE001 - converters raise anything; one line goes back
            answer = ("failed", first_line(exc))
        connection.send(answer)


class ConverterProcess:
    """The export's converter process, started at once (it imports while the export reads the
    model) and started again after one ended; a context manager that stops it at the end.
    `serve` is the process's entry point (a test may wrap it)."""

    def __init__(self, warm: bool = True, serve=None):
        self.serve, self.max_memory_mb = serve or serve_conversions, default_max_memory_mb()
        self._worker: RequestWorker | None = None
        self._ready = False
        self._pending: list[tuple] = []  # requests sent whose answers are not read yet, in order
        self._answers: dict[tuple, tuple] = {}
        self._start(warm, "fork" if warm and fork_safe() else "spawn")

    def _start(self, warm: bool = True, start_method: str = "spawn") -> RequestWorker:
        preload = (TENSORFLOW_SERVER,) if warm else ()
        worker = RequestWorker(self.serve, (warm,), self.max_memory_mb, start_method, preload)
        self._worker, self._ready, self._pending = worker, False, []
        return worker

    def ahead(self, name: str, *args) -> None:
        """Sends conversion `name` now for `convert` to collect later: the process converts
        while the export validates the previous file."""
        request = (name, args)
        if request in self._answers or request in self._pending:
            return
        for _ in range(2):  # a process found dead while idle is replaced once
            worker = self._worker if self._worker and not self._worker.broken else self._start()
            if worker.send(request):
                self._pending.append(request)
                return
        self._answers[request] = ("error", "it could not be started")

    def convert(self, name: str, *args):
        """Runs conversion `name` in the process (or collects it, sent `ahead`); ConverterCrash
        says why it gave nothing."""
        request = (name, args)
        while request not in self._answers:
            if request not in self._pending:  # not sent, or lost with a process that ended
                self.ahead(name, *args)
                continue
            oldest = self._pending[0]
            self._answers[oldest] = self._next_answer()
        status, result = self._answers.pop(request)
        if status == "ok":
            return result
        if status == "error":  # the process ended: the next conversion gets a new one
            raise ConverterCrash(f"the converter's process ended: {result}")
        raise ConverterCrash(result)

    def _next_answer(self) -> tuple:
        """The answer to the oldest pending request. When the process ended, that request was
        the one it worked on; the others are forgotten, to be sent again to a new process."""
        worker = self._worker
        if not self._ready:  # its start is not timed as a conversion
            status, result = worker.receive(START_TIMEOUT_SECONDS)
            self._ready = status == "ready"
            if not self._ready:
                answer = ("error", f"it did not start: {result}")
                return self._forget_pending(answer)
        answer = worker.receive(CONVERSION_TIMEOUT_SECONDS)
        if answer[0] == "error":
            return self._forget_pending(answer)
        self._pending.pop(0)
        return answer

    def _forget_pending(self, answer: tuple) -> tuple:
        self._pending = []
        return answer

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def __enter__(self) -> ConverterProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def convert(context, name: str, *args, then: list[tuple] = ()):
    """Conversion `name` by the export's converter process, or in this process when the context
    has none (an exporter called on its own, as the unit tests do). `then`: the conversions
    (name, *args) the export asks for next, sent ahead after this one."""
    converter = getattr(context, "converter", None)
    if converter is None:
        return CONVERSIONS[name](context.shared, *args)
    converter.ahead(name, *args)
    for request in then:
        converter.ahead(*request)
    return converter.convert(name, *args)


def calibration_file(context) -> str:
    """The export's calibration sample as an .npy file in its build folder, written once, for
    conversions that run in another process."""

    def write(path: Path) -> None:
        images = context.calibration
        np.save(path, packed(images) if isinstance(images, dict) else images, allow_pickle=False)

    return str(context.shared_path(CALIBRATION_FILE, write))


def converter_for(variants) -> contextlib.AbstractContextManager:
    """A ConverterProcess for an export of `variants`, with TensorFlow when a TFLite file is
    among them; nothing for an export that converts nothing. TensorFlow is imported here first,
    so that the process can be forked with it (`fork_safe`) instead of importing it again."""
    formats = {variant.format for variant in variants}
    if not formats & {"tflite", "onnx"}:
        return contextlib.nullcontext(None)
    if "tflite" in formats:
        import_tensorflow()
    return ConverterProcess(warm="tflite" in formats)


def fork_safe() -> bool:
    """Whether this process may fork the converter process, which then shares its imported
    TensorFlow: on Linux, before TensorFlow has run anything (no eager context, so none of its
    thread pools, whose locks a fork could copy held) and with no other Python thread. A
    process started later (after a crash) is spawned and imports TensorFlow itself."""
    import sys
    import threading

    if sys.platform != "linux" or "tensorflow" not in sys.modules:
        return False
    if threading.active_count() > 1:
        return False
    try:
        from tensorflow.python.eager import context  # TensorFlow's private module
    except ImportError:
        return False
    return getattr(context, "_context", True) is None
