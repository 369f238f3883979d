"""Artifacts on disk: checksums, the manifest, atomic writes, the output lock and staged commits."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".toolkit.lock"
STAGING_PREFIX = ".staging-"
COMMIT_NAME = "COMMIT"  # inside a staging folder: the list of entries to move; written last
_CHUNK = 1 << 20
LFS_POINTER_PREFIX = b"version https://git-lfs"


# Disk full, file too large, read-only, over quota, not writable: exit 6, whoever reports it.
DISK_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT, errno.EACCES)


def disk_problem(exc: BaseException) -> str | None:
    """The reason when `exc` is a disk problem, else None.

    Converters report them as OSError, or (TensorFlow's C++ writers) as a status message that
    only carries the strerror text, e.g. "...tempstate123; File too large [Op:SaveV2]".
    """
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        return os.strerror(exc.errno)
    return next((os.strerror(e) for e in DISK_ERRNOS if os.strerror(e) in str(exc)), None)


@contextlib.contextmanager
def io_errors(path: Path):
    """Turns disk problems (full, read-only, too large) into the documented exit code 6."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        reason = exc.strerror or str(exc)
        raise ToolkitError(f"{path}: cannot write: {reason}", ExitCode.IO) from None


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yields a temporary name beside `path` (same suffix) and renames it into place on success."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        with io_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def check_not_lfs_pointer(path: Path) -> None:
    """A Git LFS pointer checked out in place of a model: say so, not "invalid flatbuffer"."""
    if path.is_file():
        with open(path, "rb") as f:
            if f.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX:
                raise ToolkitError(
                    f"{path}: a Git LFS pointer, not the model; run `git lfs pull`",
                    ExitCode.ARTIFACT,
                )


def write_json(path: Path, data) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(folder: Path) -> str:
    """Digest of a folder: SHA-256 over "relpath NUL sha256(file) LF" per file, sorted by path."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = file.relative_to(folder).as_posix()
        digest.update(f"{rel}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def sha256_path(path: Path) -> str:
    return sha256_tree(path) if path.is_dir() else sha256_file(path)


def size_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@dataclass
class Artifact:
    """One exported file as the manifest lists it."""

    name: str
    format: str
    variant: str
    path: str  # relative to the output folder
    runtime: str | None  # None for a file nothing runs by itself (a C source)
    sha256: str
    size_bytes: int
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    validation: dict = field(default_factory=dict)
    # .tflite files: {gpu_delegate: {whole_graph, unsupported_ops}, tflite_micro: {...}}
    compatibility: dict = field(default_factory=dict)
    # int8 variants: {per_layer: "quantization/<artifact>.json"}, and for a mixed model
    # {float_layers, replaces: {artifact, validation}} too
    quantization: dict = field(default_factory=dict)


@dataclass
class Manifest:
    """OUT/manifest.json: what export wrote and how to read it."""

    artifacts: list[Artifact]
    class_names: list[str]
    source_model_sha256: str
    versions: dict[str, str]
    preprocessing: dict = field(
        default_factory=lambda: {
            "scale": "divide by 255",
            "dtype": "float32",
            "range": [0, 1],
            "input_shape": [28, 28],
        }
    )
    training: dict = field(default_factory=dict)
    created: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    task: str = "classification"  # or "other": outputs judged by the generic figures only
    data: dict = field(default_factory=dict)  # kind, path, sha256, items, labelled, calibration
    left_out: list[dict] = field(default_factory=list)  # {artifact, reason} per variant dropped
    tolerances: dict = field(default_factory=dict)  # min_agreement, max_accuracy_drop, mixed

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        fields = dict(data)
        fields["artifacts"] = [Artifact(**a) for a in data["artifacts"]]
        return cls(**fields)

    def artifact(self, name: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise ToolkitError(f"{MANIFEST_NAME}: no artifact named {name}", ExitCode.ARTIFACT)


def load_manifest(out: Path) -> Manifest:
    path = out / MANIFEST_NAME
    if not path.is_file():
        raise ToolkitError(
            f"{path}: no manifest; run `toolkit export --out {out}` first", ExitCode.ARTIFACT
        )
    try:
        manifest = Manifest.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise ToolkitError(
            f"{path}: not a valid toolkit manifest ({exc})", ExitCode.ARTIFACT
        ) from None
    folder = out.resolve()
    for artifact in manifest.artifacts:
        if not (folder / artifact.path).resolve().is_relative_to(folder):
            raise ToolkitError(
                f"{path}: artifact path {artifact.path!r} leads outside {out}; refusing it",
                ExitCode.ARTIFACT,
            )
    return manifest


def verify_manifest(out: Path, manifest: Manifest) -> list[str]:
    """One line per artifact that is missing or whose checksum changed; empty when all match."""
    problems = []
    for artifact in manifest.artifacts:
        path = out / artifact.path
        if not path.exists():
            problems.append(f"{path}: missing")
        elif sha256_path(path) != artifact.sha256:
            problems.append(f"{path}: changed (sha256 differs from {MANIFEST_NAME})")
    return problems


class OutputLock:
    """An exclusive lock on an output folder, so two commands never write it at once."""

    def __init__(self, out: Path, wait_seconds: float = 3.0):
        self.path = out / LOCK_NAME
        self.wait_seconds = wait_seconds
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        with io_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise ToolkitError(
                        f"{self.path.parent}: in use by another toolkit command (pid {holder}); "
                        "wait for it to finish or use another --out",
                        ExitCode.IO,
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _apply_commit(out: Path, staging: Path) -> None:
    """Moves each committed entry into place (idempotent), the manifest last, then drops staging."""
    entries = json.loads((staging / COMMIT_NAME).read_text())
    for name in entries:
        source, target = staging / name, out / name
        if not source.exists():
            continue  # moved before an earlier run was killed
        if source.is_dir() and target.exists():
            aside = staging / f".old-{name}"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(target, aside)
        os.replace(source, target)
    shutil.rmtree(staging, ignore_errors=True)


def recover_staging(out: Path) -> None:
    """Finishes a commit a killed run had started, and drops staging folders it had not committed.

    Call with the output lock held, so no live run's staging folder is touched.
    """
    for staging in sorted(out.glob(STAGING_PREFIX + "*")):
        if (staging / COMMIT_NAME).is_file():
            _apply_commit(out, staging)
        else:
            shutil.rmtree(staging, ignore_errors=True)


class Staging:
    """A transaction on the output folder: build everything in a staging folder, then commit.

    Commit writes the list of entries (the commit point), then moves them, `manifest.json` last;
    a run killed after the commit point is finished by the next `recover_staging`.
    """

    def __init__(self, out: Path):
        self.out = out
        self.dir = out / f"{STAGING_PREFIX}{os.getpid()}"

    def __enter__(self) -> Staging:
        with io_errors(self.dir):
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
        return self

    def commit(self, names: list[str]) -> None:
        if MANIFEST_NAME in names:
            names = [n for n in names if n != MANIFEST_NAME] + [MANIFEST_NAME]
        with io_errors(self.out):
            write_json(self.dir / COMMIT_NAME, names)
            _apply_commit(self.out, self.dir)

    def __exit__(self, *exc) -> None:
        if not (self.dir / COMMIT_NAME).is_file():
            shutil.rmtree(self.dir, ignore_errors=True)
