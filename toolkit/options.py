"""Every command's options, each default and limit written once: the CLI and the Python API both
build these objects and the pipelines take them.

Building one checks every field's type and range and raises `ToolkitError` (exit 2) naming the
option, so `epochs="3"`, `runtimes="litert"` or `min_agreement=2.0` fail at the door, not as a
`TypeError` deep in a pipeline. Choices that come from a registry (formats, runtimes,
architectures) are checked by `check_choices` where the registry is known.
"""

from __future__ import annotations

import math
import numbers
import os
import re
import types
import typing
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError

MAX_THREADS = 1024  # runtimes take a C int; far more than any CPU this runs on has cores
MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit


def option(default, low=None, high=None, *, flag: str | None = None, choices=(), nonempty=False):
    """A field with its default, inclusive limits, CLI spelling (default `--field-name`) and
    fixed choices; `nonempty` refuses an empty list."""
    metadata = {"min": low, "max": high, "flag": flag, "choices": choices, "nonempty": nonempty}
    return field(default=default, metadata=metadata)


def flag(cls, name: str) -> str:
    """How the CLI spells option `name` of options class `cls`."""
    spelled = next(f.metadata.get("flag") for f in fields(cls) if f.name == name)
    return spelled or "--" + name.replace("_", "-")


def limits(cls, name: str) -> dict:
    """The `min` and `max` of option `name`, as typer.Option takes them."""
    metadata = next(f.metadata for f in fields(cls) if f.name == name)
    return {key: metadata[key] for key in ("min", "max") if metadata.get(key) is not None}


def usage_error(cls, name: str, value, problem: str) -> ToolkitError:
    """The one-line error for a bad option: its CLI spelling, its keyword and the value."""
    return ToolkitError(f"{flag(cls, name)} ({name}={value!r}): {problem}", ExitCode.USAGE)


def check_choices(options, name: str, allowed) -> None:
    """Refuses a value (or any item of a list) of option `name` that is not in `allowed`."""
    value = getattr(options, name)
    allowed = list(allowed)
    for item in value if isinstance(value, tuple) else [value]:
        if item is not None and item not in allowed:
            raise usage_error(type(options), name, item, f"expected one of {', '.join(allowed)}")


class _Mismatch(Exception):
    """A value that does not fit a type; its message says what was expected."""


def _scalar(value, hint):
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch("expected true or false")
    if hint is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise _Mismatch("expected a whole number")
    if hint is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if math.isfinite(value):
                return float(value)
            raise _Mismatch("expected a finite number")
        raise _Mismatch("expected a number")
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Mismatch("expected a string")
    if hint is Path:
        if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
            return Path(value)
        raise _Mismatch("expected a path")
    raise TypeError(f"options of type {hint} are not supported")  # a bug here, not user input


def _coerce(value, hint):
    """`value` converted to the annotated type `hint`, or _Mismatch."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        problems = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg)
            except _Mismatch as exc:
                problems.append(str(exc).removeprefix("expected "))
        raise _Mismatch("expected " + " or ".join(problems))
    if origin is tuple:
        if isinstance(value, (str, bytes, os.PathLike)) or not isinstance(value, (list, tuple)):
            raise _Mismatch("expected a list, not a single value")
        return tuple(_coerce(item, args[0]) for item in value)
    return _scalar(value, hint)


class CheckedOptions:
    """Converts and checks every field as it is built (see the module docstring)."""

    def __post_init__(self):
        cls = type(self)
        hints = typing.get_type_hints(cls)
        for f in fields(self):
            value = getattr(self, f.name)
            try:
                converted = _coerce(value, hints[f.name])
            except _Mismatch as exc:
                raise usage_error(cls, f.name, value, str(exc)) from None
            self._check_field(f, converted)
            object.__setattr__(self, f.name, converted)
        self.check()

    def _check_field(self, f, value) -> None:
        low, high, choices = f.metadata.get("min"), f.metadata.get("max"), f.metadata.get("choices")
        if f.metadata.get("nonempty") and value == ():
            raise usage_error(type(self), f.name, value, "expected at least one")
        for item in value if isinstance(value, tuple) else [value]:
            if item is None or isinstance(item, (str, Path)) and not choices:
                continue
            if choices and item not in choices:
                expected = f"expected one of {', '.join(choices)}"
                raise usage_error(type(self), f.name, item, expected)
            if (low is not None and item < low) or (high is not None and item > high):
                bounds = [f"at least {low:g}" if low is not None else ""]
                bounds += [f"at most {high:g}" if high is not None else ""]
                expected = "expected " + " and ".join(b for b in bounds if b)
                raise usage_error(type(self), f.name, item, expected)

    def check(self) -> None:
        """Checks between fields; each class adds its own."""

    @classmethod
    def from_keywords(cls, **keywords):
        """The options from an API call's keyword arguments; an unknown one is a usage error."""
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(keywords) - known):
            raise ToolkitError(
                f"unknown option {', '.join(unknown)}; expected some of {', '.join(sorted(known))}",
                ExitCode.USAGE,
            )
        return cls(**keywords)

    @classmethod
    def from_command_line(cls, params: dict):
        """The options from a Typer command's parameters, each found by its CLI spelling:
        `--no-verify` is `not verify`, an Enum its value, an omitted list the default."""
        keywords = {}
        for f in fields(cls):
            spelled = flag(cls, f.name).lstrip("-").replace("-", "_").lower()
            value = _plain(params[spelled])
            if spelled == "no_" + f.name:
                value = not value
            if value is None and f.default is not None:
                value = f.default
            keywords[f.name] = value
        return cls(**keywords)

    def shared_with(self, cls) -> dict:
        """These options' values of the fields dataclass `cls` has too, as its keywords."""
        names = {f.name for f in fields(cls)} & {f.name for f in fields(self)}
        return {name: getattr(self, name) for name in names}


def _plain(value):
    """An Enum choice (or a list of them) as its value; anything else as it is."""
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value.value if isinstance(value, Enum) else value


@dataclass(frozen=True)
class TrainOptions(CheckedOptions):
    """`toolkit train`: what decides the trained weights, and where they go."""

    out: Path = option(Path("exported"))
    data: str | Path | None = option(None)  # fashion-mnist, an .npz file or an image folder
    data_dir: Path | None = option(None)  # where the Fashion-MNIST IDX files are
    arch: str = option("mlp")  # a name in toolkit's ARCHITECTURES
    epochs: int = option(10, 1)
    batch_size: int = option(32, 1)
    seed: int = option(0, 0, MAX_SEED)
    limit: int | None = option(None, 1)  # train on the first N training items only
    resume: bool = option(False)
    figures: bool = option(True, flag="--no-figures")  # plots/; without, a quicker run


@dataclass(frozen=True)
class ExportOptions(CheckedOptions):
    """`toolkit export`: which formats, how int8 is calibrated and judged, on which data."""

    out: Path = option(Path("exported"))
    model: Path | None = option(None)  # default OUT/model.keras
    formats: tuple[str, ...] = option(("all",), flag="--format", nonempty=True)
    calib_samples: int = option(500, 1)
    opset: int = option(17, 13)
    validate: bool = option(True, flag="--no-validate")
    data: str | Path | None = option(None)
    scale: float | None = option(None)  # model input = x * scale + offset
    offset: float = option(0.0)
    mixed_precision: str = option("auto", choices=("auto", "off"))
    min_agreement: float | None = option(None, 0, 1)
    max_accuracy_drop: float | None = option(None, 0)
    data_dir: Path | None = option(None)
    batch: str = option("1", choices=("1", "dynamic"))  # the TFLite files' (and C arrays') batch
    c_name: str | None = option(None)  # C array symbols; default: the model file's stem
    npus: tuple[str, ...] = option(("ethos-u55-128", "ethos-u85-256"), flag="--npu", nonempty=True)
    # Free input dimensions fixed at export: "NAME=H,W,C" per input, or "H,W,C" for one input.
    input_shapes: tuple[str, ...] = option((), flag="--input-shape")
    figures: bool = option(True, flag="--no-figures")  # quantization/*.png; the records remain

    def check(self) -> None:
        if self.c_name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.c_name):
            raise usage_error(type(self), "c_name", self.c_name, "expected a C identifier")
        self.parsed_input_shapes()

    @property
    def fixed_batch(self) -> int | None:
        """The TFLite files' (and C arrays') batch: 1, or None for a dynamic batch."""
        return None if self.batch == "dynamic" else 1

    def parsed_input_shapes(self) -> dict[str, tuple[int, ...]]:
        """--input-shape as {input name: shape} ("" names the one input of a one-input model)."""
        shapes = {}
        for given in self.input_shapes:
            name, _, dims = given.rpartition("=")
            if not re.fullmatch(r"\d+(,\d+)*", dims) or name in shapes:
                raise usage_error(
                    type(self), "input_shapes", given, "expected NAME=H,W,C or H,W,C, once each"
                )
            shape = tuple(int(d) for d in dims.split(","))
            if not all(0 < d <= 65536 for d in shape):
                raise usage_error(type(self), "input_shapes", given, "dimensions 1..65536")
            shapes[name] = shape
        return shapes


@dataclass(frozen=True)
class CompareOptions(CheckedOptions):
    """`toolkit compare`: how hard to measure, on what data, and the gates."""

    out: Path = option(Path("exported"))
    threads: int = option(1, 1, MAX_THREADS)
    runs: int = option(1000, 1, 10_000_000)
    max_seconds: float = option(5.0, 0.01, 3600)
    batch_size: int = option(256, 1)
    max_accuracy_drop: float | None = option(None, 0)
    baseline: Path | None = option(None)
    max_latency_regression: float | None = option(None, 0)
    # Gate: a row outside the tolerance its artifact was validated to at export fails it.
    fail_outside_tolerance: bool = option(False)
    timeout: float = option(300.0, 1, 86400)
    max_memory: int | None = option(None, 64)  # MB; default half the RAM
    verify: bool = option(True, flag="--no-verify")
    runtimes: tuple[str, ...] | None = option(None, flag="--runtime", nonempty=True)
    data: str | Path | None = option(None)
    limit: int | None = option(None, 1)
    data_dir: Path | None = option(None)
    # The report's plots and flip galleries; without them, a gate's run skips their drawing.
    figures: bool = option(True, flag="--no-figures")
    # Where rows run: "local" (this machine) and ssh://[user@]host[:port][?python=PATH] devices.
    devices: tuple[str, ...] = option(("local",), flag="--device", nonempty=True)
    ssh_config: Path | None = option(None)  # ssh's -F: another client config file
    cluster: str | None = option(None)  # a Ray cluster: HOST:PORT or ray://HOST:PORT

    def check(self) -> None:
        if self.max_latency_regression is not None and self.baseline is None:
            raise ToolkitError("--max-latency-regression needs --baseline", ExitCode.USAGE)


@dataclass(frozen=True)
class ReportOptions(CheckedOptions):
    """`toolkit report`: the folder to re-render and the baseline to compare with."""

    out: Path = option(Path("exported"))
    baseline: Path | None = option(None)
    # The plots drawn again; without, the page gets the tables and the kept files (export's
    # per-layer plots, compare's flip galleries).
    figures: bool = option(True, flag="--no-figures")


@dataclass(frozen=True)
class PredictOptions(CheckedOptions):
    """`toolkit predict`: the inputs, the artifact and how to run it."""

    images: tuple[Path, ...] = option((), flag="IMAGES")
    out: Path = option(Path("exported"))
    artifact: Path | None = option(None)  # default OUT/model.keras
    index: tuple[int, ...] = option((), 0)
    plot: Path | None = option(None)
    threads: int = option(1, 1, MAX_THREADS)
    verify: bool = option(True, flag="--no-verify")
    data: str | Path | None = option(None)
    data_dir: Path | None = option(None)

    def check(self) -> None:
        if not self.images and not self.index:
            raise ToolkitError("give image files, or --index N for test-set images", ExitCode.USAGE)


@dataclass(frozen=True)
class VerifyOptions(CheckedOptions):
    """`toolkit verify`: the folder whose manifest is checked."""

    out: Path = option(Path("exported"))
