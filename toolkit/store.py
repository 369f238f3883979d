"""An output folder's state: the manifest and its artifacts, the output lock, staged commits."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError
from toolkit.fsio import (
    PLAIN_NAME,
    check_replaceable,
    io_errors,
    plain_relative,
    read_json,
    sha256_path,
    write_json,
)
from toolkit.schema import check_fields

MANIFEST_NAME = "manifest.json"
LOCK_NAME = ".toolkit.lock"
STAGING_PREFIX = ".staging-"
COMMIT_NAME = "COMMIT"  # inside a staging folder: the list of entries to move; written last


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
    # The model's inputs (name, shape, dtype, layout, preprocessing) and outputs (name, shape,
    # dtype, kind: classifier/binary/values, class_names), in the Keras order, by the names
    # every artifact uses; each artifact lists its own too, with its quantization.
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)

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
            for record in ("quantization", "npu"):  # reports open these paths
                if "per_layer" in entry.get(record, {}):
                    plain_relative(entry[record]["per_layer"], f"artifact {record}.per_layer")
        _check_class_counts(data)
        return cls(**{**data, "artifacts": [Artifact(**a) for a in data["artifacts"]]})

    def artifact(self, name: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise ToolkitError(f"{MANIFEST_NAME}: no artifact named {name}", ExitCode.ARTIFACT)


def _check_class_counts(data: dict) -> None:
    """Each classifier output's class names are as many as its scores (a reader indexes the
    names by the score's position); the manifest's own list is the first classifier's."""
    classifiers = [
        output
        for output in data.get("outputs", [])
        if isinstance(output, dict) and output.get("kind") == "classifier"
    ]
    for output in classifiers:
        shape, names = output.get("shape"), output.get("class_names")
        count = shape[-1] if isinstance(shape, list) and shape else None
        if not isinstance(count, int):
            continue
        if isinstance(names, list) and names and len(names) != count:
            raise ValueError(
                f"output {output.get('name')!r} has {count} scores but {len(names)} class_names"
            )
        if output is classifiers[0] and data["class_names"] and len(data["class_names"]) != count:
            raise ValueError(
                f"field 'class_names' has {len(data['class_names'])} names for the "
                f"{count} scores of output {output.get('name')!r}"
            )


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


def _remove_entry(out: Path, name: str) -> None:
    """Removes `out/name` without following a link (a link itself is removed)."""
    if not PLAIN_NAME.fullmatch(name):
        return
    path = out / name
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


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

    def commit(self, names: list[str], superseded: Iterable[str] = ()) -> None:
        """Commits `names`, then removes `superseded`: entries an earlier run wrote under names
        this run declares but did not write (a left-out variant, an int8 file a mixed one
        replaced), so no file the manifest no longer lists is taken for a current one."""
        if MANIFEST_NAME in names:
            names = [n for n in names if n != MANIFEST_NAME] + [MANIFEST_NAME]
        with io_errors(self.out):
            write_json(self.dir / COMMIT_NAME, names)  # the commit point; no later interrupt
            _apply_commit(self.out, self.dir, _committed_names(self.out, self.dir))
            for name in sorted(set(superseded) - set(names)):
                _remove_entry(self.out, name)

    def __exit__(self, *exc) -> None:
        if not (self.dir / COMMIT_NAME).is_file():
            shutil.rmtree(self.dir, ignore_errors=True)
