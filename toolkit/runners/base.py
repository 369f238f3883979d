"""The interface every runtime implements: load, predict outputs by name, expose a bare call."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from toolkit.arrays import Named, as_named, in_named_batches
from toolkit.errors import ExitCode, ToolkitError
from toolkit.fsio import check_artifact_file
from toolkit.results import UNSUPPORTED


class Unsupported(ToolkitError):
    """This runtime cannot run this artifact (an op or type it lacks): a row marked
    `unsupported` with the reason, not a failure."""

    def __init__(self, message: str):
        super().__init__(message, ExitCode.ARTIFACT)


def attempt(runtime: str, task: Callable[[], object]) -> tuple[str, object]:
    """("ok", result), ("unsupported", reason), or ("error", (one line, exit code)) for `task`,
    which runs something in `runtime`: a runtime failing is a refusal, never a crash."""
    import traceback

    try:
        return "ok", task()
    except Unsupported as exc:
        return UNSUPPORTED, str(exc)
    except ToolkitError as exc:
        return "error", (str(exc), int(exc.code))
    except Exception as exc:  # noqa: BLE001 - a runtime failing is a refusal, not a crash
        # (type, value): the one-argument form is 3.10+, and the ssh agent runs this on 3.9
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return "error", (f"{type(exc).__name__} in {runtime}: {last}", int(ExitCode.ARTIFACT))


class Runner(ABC):
    """One artifact loaded in one runtime; used as a context manager so it is always closed.

    `predict` takes model-ready float32 inputs by input name (a plain array for a one-input
    model), (N, *input shape) each, and returns float32 outputs (N, ...) by output name, in
    the file's output order: callers look outputs up by name, never by position, since a
    converter may reorder them. Each runner adapts the layout and any integer quantization
    itself. A runtime that cannot run a file raises `Unsupported` from its constructor.
    """

    runtime: ClassVar[str] = ""  # key in RUNNERS and the `runtime` of report rows
    module: ClassVar[str] = ""  # the runtime's Python module, imported before load time is measured
    package: ClassVar[str] = ""  # the distribution whose version reports record
    suffixes: ClassVar[tuple[str, ...]] = ()  # file types it opens ("/" for a folder)
    # Modules a fork server imports once for all of this runtime's local workers, which it then
    # forks instead of starting each as a new interpreter. Only what the worker needs anyway
    # (its memory peak includes the server's), and nothing whose import starts a thread (a fork
    # copies none, and ONNX Runtime's and OpenVINO's imports start one).
    server_imports: ClassVar[tuple[str, ...]] = ("numpy",)
    input_names: list[str]  # the file's inputs and outputs, set by each runner when loaded
    output_names: list[str]
    predict_batch: int = 256  # items per runtime call in `predict` (1 for a static batch of 1)

    def __init__(self, path: Path, threads: int = 1):
        self.path = Path(path)
        self.threads = threads
        check_artifact_file(self.path)

    @classmethod
    def known_unsupported(cls, artifact) -> str | None:
        """Why this runtime cannot run `artifact`, when the manifest already says so (no worker
        is started for it); None when it may."""
        return None

    def named(self, inputs) -> Named:
        """`inputs` by this file's input names; a wrong or missing name is the caller's error."""
        try:
            return as_named(inputs, self.input_names)
        except ValueError as exc:
            raise ToolkitError(f"{self.path}: {exc}", ExitCode.USAGE) from None

    def predict(self, inputs) -> Named:
        named = self.named(inputs)
        return in_named_batches(self._predict_batch, named, self.predict_batch)

    @abstractmethod
    def _predict_batch(self, inputs: Named) -> Named: ...

    def bind(self, inputs) -> Callable[[], object]:
        """Puts `inputs` into the runtime's own input buffers; returns the bare call to time."""
        return self._bind(self.named(inputs))

    @abstractmethod
    def _bind(self, inputs: Named) -> Callable[[], object]: ...

    @abstractmethod
    def bound_outputs(self) -> Named:
        """The float32 outputs of the last bound call by name, read from the runtime's own
        buffers (the timed path must compute what `predict` computes; a test holds every
        runner to it)."""

    def io_details(self) -> tuple[list[dict], list[dict]]:
        """Inputs and outputs as the manifest records them (name, shape, dtype, quantization)."""
        return [], []

    def extras(self) -> dict:
        """Runtime-specific figures for the report row (e.g. a micro arena size, settings)."""
        return {}

    def close(self) -> None:  # noqa: B027 - most runtimes free everything on garbage collection
        """Releases the runtime's resources."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """Float -> integer with the tensor's own affine parameters, saturating at the type's range."""
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)


def check_quantization(path: Path, scale: float, what: str) -> None:
    """A zero, negative or non-finite scale makes every score meaningless: refuse the file."""
    if not np.isfinite(scale) or scale <= 0:
        raise ToolkitError(
            f"{path}: invalid quantization of the {what} (scale {scale}); re-export the model",
            ExitCode.ARTIFACT,
        )
