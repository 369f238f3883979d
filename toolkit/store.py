"""Artifacts on disk: checksums, the manifest, atomic writes, the output lock and staged commits."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from toolkit import interrupts
from toolkit.errors import ExitCode, ToolkitError, first_line
from toolkit.schema import check_fields

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".toolkit.lock"
STAGING_PREFIX = ".staging-"
COMMIT_NAME = "COMMIT"  # inside a staging folder: the list of entries to move; written last
_CHUNK = 1 << 20
LFS_POINTER_PREFIX = b"version https://git-lfs"
JSON_MAX_BYTES = 64 << 20  # manifests, reports and checkpoint states are kilobytes
# The form of every name toolkit writes into an output folder: one path component, not hidden.
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


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


def check_replaceable(target: Path, folder: bool = False, code: ExitCode = ExitCode.IO) -> None:
    """Refuses to replace an existing `target` that is not a regular file (or a folder where one
    is expected): a rename would put our file in place of a device, a FIFO or a folder."""
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ToolkitError(f"{target}: cannot write: {_reason(exc)}", code) from None
    if stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode):
        return
    kind = "a folder" if folder else "a regular file"
    raise ToolkitError(
        f"{target}: cannot write: exists and is not {kind}; refusing to replace it", code
    )


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yields a temporary name beside `path` (same suffix) and renames it into place on success,
    unless an interrupt arrived meanwhile (then the previous file stays)."""
    check_replaceable(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        with io_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)  # a link left at this name would be written through
            yield tmp
            interrupts.check()
            check_replaceable(path)  # writing may have taken long: look again
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or first_line(exc)


def open_regular(path: Path, code: ExitCode):
    """`path` opened for binary reading when it is a regular file; anything else is refused with
    `code` (a FIFO blocks the reader, a device reads without end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not block
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise ToolkitError(f"{path}: cannot read: {_reason(exc)}", code) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ToolkitError(f"{path}: not a regular file (a FIFO, device or folder)", code)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_capped(path: Path, code: ExitCode, max_bytes: int) -> bytes:
    """The bytes of a regular file, refused with `code` when it holds more than `max_bytes`."""
    with open_regular(path, code) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise ToolkitError(f"{path}: cannot read: {_reason(exc)}", code) from None
    if len(data) > max_bytes:
        raise ToolkitError(f"{path}: larger than {max_bytes} bytes; refusing to read it", code)
    return data


def read_json(path: Path, code: ExitCode, what: str, max_bytes: int = JSON_MAX_BYTES):
    """A JSON document from a regular file of bounded size; `what` names it in a refusal."""
    data = read_capped(path, code, max_bytes)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested thousands deep
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        raise ToolkitError(f"{path}: not a valid {what} ({reason})", code) from None


def check_artifact_file(path: Path) -> None:
    """What a runtime is about to load must be a folder or a regular file, and not a Git LFS
    pointer checked out in place of a model (say so, not "invalid flatbuffer")."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return
    except (OSError, ValueError):
        return  # missing: the runtime's own loader says so
    with open_regular(path, ExitCode.ARTIFACT) as f:
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
    with open_regular(path, ExitCode.ARTIFACT) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(folder: Path) -> str:
    """Digest of a folder: SHA-256 over "relpath NUL sha256(file) LF" per file, sorted by path."""
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if not p.is_dir()):
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
    batch: int | None = None  # the input's fixed batch (1 for the edge files); None: dynamic
    made_from: str | None = None  # the validated artifact whose bytes it holds (a C array)
    # Ethos-U files: accelerator, system_config, memory_mode, vela_version, source, per_layer
    # ("npu/<source>.<accelerator>.csv") and Vela's estimate (labelled as such)
    npu: dict = field(default_factory=dict)


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
        """Refuses (ValueError) any field of the wrong type before a dataclass is built."""
        check_fields(data, cls, skip=("artifacts",))
        if not isinstance(data["artifacts"], list):
            raise ValueError("field 'artifacts' is not a list")
        for entry in data["artifacts"]:
            check_fields(entry, Artifact)
            for key in ("name", "path"):
                if not PLAIN_NAME.fullmatch(entry[key]):
                    raise ValueError(
                        f"artifact {key} {entry[key]!r} leads outside the folder or is not a "
                        "plain file name"
                    )
        return cls(**{**data, "artifacts": [Artifact(**a) for a in data["artifacts"]]})

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
    data = read_json(path, ExitCode.ARTIFACT, "toolkit manifest")
    try:
        manifest = Manifest.from_json(data)
    except ValueError as exc:
        raise ToolkitError(
            f"{path}: not a valid toolkit manifest ({exc})", ExitCode.ARTIFACT
        ) from None
    folder = os.path.realpath(out)
    for artifact in manifest.artifacts:
        # realpath, unlike resolve(), neither raises on a symlink loop nor needs the file.
        if not Path(os.path.realpath(out / artifact.path)).is_relative_to(folder):
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
            try:  # a link planted in a stranger's folder must not be followed and truncated
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                fd = -1
        if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
            if fd >= 0:
                os.close(fd)
            raise ToolkitError(
                f"{self.path}: a link, FIFO or device, not toolkit's lock file; refusing to "
                "write through it",
                ExitCode.ARTIFACT,
            )
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


def _committed_names(out: Path, staging: Path) -> list[str] | None:
    """The entries a staging folder's commit list names (None: never committed), checked before
    anything moves: the folder may come from someone else, so a list that names anything but
    plain names toolkit writes, or entries that are links or devices, is refused (exit 4)."""
    refuse = f"refusing to recover from it; remove {staging} if it is not yours"
    if staging.is_symlink() or not staging.is_dir():
        raise ToolkitError(
            f"{staging}: not a staging folder toolkit wrote; {refuse}", ExitCode.ARTIFACT
        )
    commit = staging / COMMIT_NAME
    if not os.path.lexists(commit):
        return None
    names = read_json(commit, ExitCode.ARTIFACT, "commit list")
    if not isinstance(names, list) or not all(
        isinstance(name, str) and PLAIN_NAME.fullmatch(name) for name in names
    ):
        raise ToolkitError(
            f"{commit}: names entries toolkit never writes; {refuse}", ExitCode.ARTIFACT
        )
    for name in names:
        source = staging / name
        if not os.path.lexists(source):
            continue  # moved before an earlier run was killed
        mode = os.lstat(source).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ToolkitError(
                f"{source}: a link, FIFO or device, not a file toolkit wrote; {refuse}",
                ExitCode.ARTIFACT,
            )
        check_replaceable(out / name, folder=stat.S_ISDIR(mode), code=ExitCode.ARTIFACT)
    return names


def _apply_commit(out: Path, staging: Path, names: list[str]) -> None:
    """Moves each committed entry into place (idempotent), the manifest last, then drops staging."""
    for name in names:
        source, target = staging / name, out / name
        if not os.path.lexists(source):
            continue  # moved before an earlier run was killed
        if source.is_dir() and target.exists():
            aside = staging / f".old-{name}"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(target, aside)
        os.replace(source, target)
    shutil.rmtree(staging, ignore_errors=True)


def recover_staging(out: Path) -> None:
    """Finishes a commit a killed run had started, and drops staging folders it had not committed.

    Every staging folder is checked before any is touched. Call with the output lock held, so no
    live run's staging folder is touched.
    """
    plans = [
        (staging, _committed_names(out, staging))
        for staging in sorted(out.glob(STAGING_PREFIX + "*"))
    ]
    for staging, names in plans:
        if names is None:
            shutil.rmtree(staging, ignore_errors=True)
        else:
            _apply_commit(out, staging, names)


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
            write_json(self.dir / COMMIT_NAME, names)  # the commit point; no later interrupt
            _apply_commit(self.out, self.dir, _committed_names(self.out, self.dir))

    def __exit__(self, *exc) -> None:
        if not (self.dir / COMMIT_NAME).is_file():
            shutil.rmtree(self.dir, ignore_errors=True)
