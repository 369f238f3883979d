"""Files as toolkit reads and writes them: atomic writes, capped reads, digests, disk errors.

Every file is treated as hostile: reads are bounded and refuse what is not a regular file, and a
write never leaves a half-written file or writes through a link.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from pathlib import Path, PurePosixPath

from toolkit import interrupts
from toolkit.errors import ExitCode, ToolkitError, first_line

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


# A file embedded in a page (a flip gallery, a per-layer plot): toolkit draws them far smaller.
EMBED_MAX_BYTES = 32 << 20


def plain_relative(text: object, what: str) -> PurePosixPath:
    """`text` as a relative path of plain names (each one PLAIN_NAME, so no "..", no "/" at
    either end); ValueError naming `what` for anything else, e.g. a path read from a file."""
    parts = text.split("/") if isinstance(text, str) else []
    if not parts or not all(PLAIN_NAME.fullmatch(part) for part in parts):
        raise ValueError(f"{what} {text!r} is not a plain relative path inside the folder")
    return PurePosixPath(*parts)


def read_confined(root: Path, relative: object, code: ExitCode, max_bytes: int) -> bytes | None:
    """The bytes of `root`/`relative`, None when it does not exist.

    `relative` comes from a file someone else may have written: refused with `code` unless it is
    plain names below `root`, every one a real folder (no link followed) down to a regular file
    of at most `max_bytes`.
    """
    try:
        parts = plain_relative(relative, "path").parts
    except ValueError as exc:
        raise ToolkitError(f"{root}: {exc}; refusing it", code) from None
    path = root.joinpath(*parts)
    fds: list[int] = []
    try:
        fds.append(os.open(root, os.O_RDONLY | os.O_DIRECTORY))
        for k, part in enumerate(parts):
            # The file itself is opened without blocking: opening a FIFO would wait for a writer.
            folder = os.O_DIRECTORY if k < len(parts) - 1 else os.O_NONBLOCK
            fds.append(os.open(part, os.O_RDONLY | os.O_NOFOLLOW | folder, dir_fd=fds[-1]))
        info = os.fstat(fds[-1])
        if not stat.S_ISREG(info.st_mode):
            raise ToolkitError(f"{path}: not a regular file (a FIFO, device or folder)", code)
        if info.st_size > max_bytes:
            raise ToolkitError(f"{path}: larger than {max_bytes} bytes; refusing to read it", code)
        os.set_blocking(fds[-1], True)
        with os.fdopen(os.dup(fds[-1]), "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            reason = "a symbolic link or not a folder on the way; toolkit follows no link there"
            raise ToolkitError(f"{path}: {reason}", code) from None
        raise ToolkitError(f"{path}: cannot read: {_reason(exc)}", code) from None
    finally:
        for fd in fds:
            os.close(fd)
    if len(data) > max_bytes:  # grew since fstat
        raise ToolkitError(f"{path}: larger than {max_bytes} bytes; refusing to read it", code)
    return data


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


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def sha256_stream(file) -> str:
    """The SHA-256 of what is left to read in a binary file (`hashlib.file_digest` is 3.11+,
    and the ssh agent ships this module to a device's Python 3.9)."""
    digest = hashlib.sha256()
    while chunk := file.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    with open_regular(path, ExitCode.ARTIFACT) as f:
        return sha256_stream(f)


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
