"""What travels between compare and wherever a row runs: the `Job` out, the `Measurement` back.

Both are plain data. A Measurement's file form is a zip of `.npy` members plus one JSON member
(an `.npz` numpy can open), never a pickle: it may come from another machine, so `from_bytes`
checks every field and refuses anything else with one line.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import asdict, dataclass, field

import numpy as np

from toolkit.errors import ExitCode, ToolkitError
from toolkit.process import default_max_memory_mb

JSON_MEMBER = "measurement.json"
LATENCIES_MEMBER = "latencies_ns.npy"
FORMAT = "toolkit-measurement"
VERSION = 1
# A measurement holds one output array per item, so its size follows the data set: the cap is
# the caller's (e.g. from the evaluation data's size); this is the bound when none is given.
DEFAULT_MAX_BYTES = 1 << 30


@dataclass(frozen=True)
class MeasureSettings:
    """How hard to measure; the same for every artifact of one compare."""

    threads: int = 1
    runs: int = 1000
    max_seconds: float = 5.0
    batch_size: int = 256
    warmup: int = 50
    timeout_seconds: float = 300.0
    max_memory_mb: int = field(default_factory=default_max_memory_mb)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> MeasureSettings:
        """Settings from JSON, each field checked (ValueError names the first one wrong)."""
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            raise ValueError("settings: expected exactly the fields of MeasureSettings")
        for name in ("threads", "runs", "batch_size", "warmup", "max_memory_mb"):
            _check_number(data[name], f"settings.{name}", integer=True)
        for name in ("max_seconds", "timeout_seconds"):
            _check_number(data[name], f"settings.{name}")
        return cls(**data)


@dataclass(frozen=True)
class Job:
    """One row to measure: the artifact (a plain name inside the output folder) and its checksum,
    the runtime by its RUNNERS name, and how hard to measure."""

    artifact: str
    sha256: str
    runtime: str
    settings: MeasureSettings

    def to_json(self) -> dict:
        return {**asdict(self), "settings": self.settings.to_json()}

    @classmethod
    def from_json(cls, data: object) -> Job:
        if not isinstance(data, dict) or set(data) != {"artifact", "sha256", "runtime", "settings"}:
            raise ValueError("job: expected artifact, sha256, runtime and settings")
        for name in ("artifact", "sha256", "runtime"):
            if not isinstance(data[name], str) or not data[name]:
                raise ValueError(f"job.{name}: expected a non-empty string")
        return cls(
            data["artifact"],
            data["sha256"],
            data["runtime"],
            MeasureSettings.from_json(data["settings"]),
        )


@dataclass(frozen=True)
class Measurement:
    """One artifact measured in one runtime on one machine: outputs by output name (float32, in
    the model's output order), per-call latencies, throughput, load time, peak memory, the
    runner's extras and a description of the machine."""

    outputs: dict[str, np.ndarray]
    latencies_ns: np.ndarray
    throughput_ips: float
    load_ms: float
    peak_rss_mb: float
    extras: dict = field(default_factory=dict)
    machine: dict = field(default_factory=dict)

    @property
    def first_output(self) -> np.ndarray:
        return next(iter(self.outputs.values()))

    def to_bytes(self) -> bytes:
        """The file form: `.npy` members for the arrays, one JSON member for everything else."""
        header = {
            "format": FORMAT,
            "version": VERSION,
            "outputs": list(self.outputs),
            "throughput_ips": float(self.throughput_ips),
            "load_ms": float(self.load_ms),
            "peak_rss_mb": float(self.peak_rss_mb),
            "extras": self.extras,
            "machine": self.machine,
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(JSON_MEMBER, json.dumps(header, allow_nan=False))
            _write_array(archive, LATENCIES_MEMBER, np.asarray(self.latencies_ns, np.int64))
            for i, array in enumerate(self.outputs.values()):
                _write_array(archive, f"output_{i}.npy", np.asarray(array, np.float32))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> Measurement:
        """A Measurement from its file form; ToolkitError (exit 4) on anything malformed,
        including a payload or member larger than `max_bytes`."""
        try:
            return _read(data, max_bytes)
        except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ToolkitError(f"not a usable measurement: {reason}", ExitCode.ARTIFACT) from None


def _write_array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(name, "w") as member:
        np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)


def _read(data: bytes, max_bytes: int) -> Measurement:
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError("expected bytes")
    if len(data) > max_bytes:
        raise ValueError(f"{len(data)} bytes, more than the {max_bytes} allowed")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {info.filename: info for info in archive.infolist()}
        if sum(info.file_size for info in members.values()) > max_bytes:
            raise ValueError(f"members unpack to more than the {max_bytes} bytes allowed")
        header = json.loads(archive.read(JSON_MEMBER))
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError(f"{JSON_MEMBER} is not a {FORMAT}")
        if header.get("version") != VERSION:
            raise ValueError(f"version {header.get('version')!r}, expected {VERSION}")
        names = header.get("outputs")
        expected = {JSON_MEMBER, LATENCIES_MEMBER}
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ValueError("outputs: expected a non-empty list of names")
        if len(set(names)) != len(names):
            raise ValueError("outputs: names repeat")
        expected |= {f"output_{i}.npy" for i in range(len(names))}
        if set(members) != expected:
            raise ValueError(f"members {sorted(members)}, expected {sorted(expected)}")
        latencies = _read_array(archive, LATENCIES_MEMBER, np.int64, ndim=1)
        outputs = {
            name: _read_array(archive, f"output_{i}.npy", np.float32)
            for i, name in enumerate(names)
        }
    return _checked(header, outputs, latencies)


def _read_array(archive: zipfile.ZipFile, name: str, dtype, ndim: int | None = None) -> np.ndarray:
    with archive.open(name) as member:
        array = np.lib.format.read_array(member, allow_pickle=False)
    if array.dtype != np.dtype(dtype):
        raise ValueError(f"{name}: dtype {array.dtype}, expected {np.dtype(dtype)}")
    if array.ndim < 1 or (ndim is not None and array.ndim != ndim):
        raise ValueError(f"{name}: {array.ndim} dimensions")
    return array


def _checked(header: dict, outputs: dict, latencies: np.ndarray) -> Measurement:
    if len(latencies) == 0 or (latencies < 0).any():
        raise ValueError("latencies_ns: expected at least one non-negative time")
    rows = {len(array) for array in outputs.values()}
    if len(rows) != 1:
        raise ValueError("outputs: arrays differ in length")
    for name in ("throughput_ips", "load_ms", "peak_rss_mb"):
        _check_number(header.get(name), name)
    for name in ("extras", "machine"):
        if not isinstance(header.get(name), dict):
            raise ValueError(f"{name}: expected an object")
    return Measurement(
        outputs=outputs,
        latencies_ns=latencies,
        throughput_ips=float(header["throughput_ips"]),
        load_ms=float(header["load_ms"]),
        peak_rss_mb=float(header["peak_rss_mb"]),
        extras=header["extras"],
        machine=header["machine"],
    )


def _check_number(value: object, name: str, integer: bool = False) -> None:
    """ValueError unless `value` is a finite, non-negative number (a whole one if `integer`)."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{name}: expected a {'whole ' if integer else ''}number")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, found {value}")
