"""An `.npz` file in the keras.datasets layout: x_test, y_test, optionally x_train, y_train and
class_names; for several inputs or outputs, one array per name (x_test/<input>,
y_test/<output>, class_names/<output>). Read member by member from the zip, never unpickled,
every member's size bounded from its zip and .npy headers before a byte of its data is
inflated."""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from toolkit.data.checks import check_items, check_labels, data_error, open_data_file
from toolkit.data.dataset import Dataset

# The most one .npz may inflate to (README, "Data"): the smaller of this and a quarter of the
# machine's memory. The zip header's size bounds what inflating a member can produce, so a
# zip bomb is refused from its header.
NPZ_MAX_BYTES = 4 * 2**30
MAX_MEMBERS = 64  # the keras.datasets layout has five


def npz_cap() -> int:
    """How many bytes the members of one .npz may inflate to on this machine."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return NPZ_MAX_BYTES
    return min(NPZ_MAX_BYTES, memory // 4)


def read_npz(path: Path) -> Dataset:
    arrays = read_arrays(path)
    if any("/" in name for name in arrays):
        from toolkit.data.named import read_named_npz

        return read_named_npz(arrays, path)
    if "x_test" not in arrays:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise data_error(
            path, f"no x_test array (found {found}); expected the keras.datasets layout"
        )
    class_names = _class_names(arrays, path)
    x_test = check_items(arrays["x_test"], path, "x_test")
    y_test = _labels(arrays, "y_test", x_test, path, class_names)
    x_train = y_train = None
    if "x_train" in arrays:
        x_train = check_items(arrays["x_train"], path, "x_train")
        if x_train.shape[1:] != x_test.shape[1:]:
            raise data_error(
                path,
                f"x_train items {x_train.shape[1:]} differ from x_test items {x_test.shape[1:]}",
            )
        y_train = _labels(arrays, "y_train", x_train, path, class_names)
    return Dataset(x_train, y_train, x_test, y_test, path, class_names=class_names, kind="npz")


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every member of the .npz at `path` by name (without ".npy"), each checked before reading."""
    with open_data_file(path) as file:
        try:
            archive = zipfile.ZipFile(file)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            reason = "not a zip archive" if isinstance(exc, zipfile.BadZipFile) else exc
            raise data_error(path, f"not a readable .npz file ({reason})") from None
        with archive:
            members = _sized_members(archive, path)
            return {name: _read_member(archive, info, path) for name, info in members.items()}


def _sized_members(archive: zipfile.ZipFile, path: Path) -> dict[str, zipfile.ZipInfo]:
    """The members by array name, refused when one is not an array or their inflated sizes,
    as the zip header states them, pass the cap."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise data_error(path, f"{len(infos)} members, more than the {MAX_MEMBERS} accepted")
    cap, total, members = npz_cap(), 0, {}
    for info in infos:
        if not info.filename.endswith(".npy") or info.is_dir():
            raise data_error(path, f"member {info.filename!r} is not a .npy array")
        total += info.file_size
        if total > cap:
            raise data_error(
                path,
                f"member {info.filename} inflates to {info.file_size:,} bytes, past the "
                f"{cap:,} bytes an .npz may hold in all (README, Data)",
            )
        members[info.filename[: -len(".npy")]] = info
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> np.ndarray:
    where = f"member {info.filename}"
    try:
        with archive.open(info) as member:
            shape, fortran, dtype = _array_header(member, path, where)
            size = math.prod(shape) * dtype.itemsize
            stored = info.file_size - member.tell()
            if size != stored:
                raise data_error(
                    path,
                    f"{where}: its .npy header claims {shape} {dtype} ({size:,} bytes) "
                    f"but the member holds {stored:,} bytes",
                )
            buffer = bytearray(size)
            view, got = memoryview(buffer), 0
            while got < size:
                more = member.readinto(view[got:])
                if not more:
                    raise data_error(path, f"{where}: truncated at {got:,} of {size:,} bytes")
                got += more
            member.read(1)  # reaches the end, where zipfile checks the CRC
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError) as exc:
        raise data_error(path, f"{where}: corrupt or unreadable ({exc})") from None
    except RuntimeError as exc:  # an encrypted member
        raise data_error(path, f"{where}: unreadable ({exc})") from None
    array = np.frombuffer(buffer, dtype=dtype)
    return array.reshape(shape, order="F" if fortran else "C")


def _array_header(member, path: Path, where: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a member's .npy header; object arrays refused."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = npy.read_array_header_1_0(member)
        else:
            shape, fortran, dtype = npy.read_array_header_2_0(member)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise data_error(path, f"{where}: not a .npy array ({exc})") from None
    if dtype.hasobject:
        raise data_error(path, f"{where}: holds object arrays (refused: never unpickled)")
    return shape, fortran, dtype


def _class_names(arrays: dict, path: Path) -> tuple[str, ...] | None:
    """The class names as text: bytes names are decoded as UTF-8, not shown as "b'...'"."""
    if "class_names" not in arrays:
        return None
    names = arrays["class_names"]
    if names.dtype.kind not in "US" or names.ndim != 1:
        raise data_error(path, f"class_names must be a 1-D string array, found {names.dtype}")
    if names.dtype.kind == "U":
        return tuple(str(n) for n in names)
    try:
        return tuple(bytes(n).decode("utf-8") for n in names)
    except UnicodeDecodeError as exc:
        raise data_error(path, f"class_names: not UTF-8 text ({exc.reason})") from None


def _labels(arrays, name, items, path, class_names) -> np.ndarray | None:
    if name not in arrays:
        return None
    labels = arrays[name]
    if labels.ndim == 2 and labels.shape[1] == 1:  # keras.datasets.cifar10 stores (N, 1)
        labels = labels.reshape(-1)
    return check_labels(labels, len(items), path, name, class_names)
