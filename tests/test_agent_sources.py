"""What the ssh executor sends to a device runs there: Python 3.9+ (vermin reads every file the
agent zip holds) and nothing outside the zip is imported (a device has no toolkit installed)."""

from __future__ import annotations

import ast
import io
import zipfile
from pathlib import Path

import pytest
import vermin

from toolkit.comparing.ssh import agent_files, agent_package

DEVICE_PYTHON = (3, 9)  # the agent's promise (README: Measuring on a device)
ROOT = Path(__file__).resolve().parents[1] / "toolkit"
# Imported only by `toolkit.main()`, the console script, which never runs on a device.
HOST_ONLY = {("__init__.py", "toolkit.cli")}


def _isinstance_union(source: str) -> bool:
    """`isinstance(x, A | B)`: 3.10+ at run time. vermin's union-types check cannot tell these
    from annotations, which `from __future__ import annotations` leaves unevaluated on 3.9."""
    return any(
        isinstance(node, ast.Call)
        and getattr(node.func, "id", None) in ("isinstance", "issubclass")
        and len(node.args) == 2
        and isinstance(node.args[1], ast.BinOp)
        and isinstance(node.args[1].op, ast.BitOr)
        for node in ast.walk(ast.parse(source))
    )


def newer_than_device(paths: list[Path]) -> dict[str, tuple]:
    """Each file needing a Python 3 newer than DEVICE_PYTHON (by vermin), by name."""
    found = {}
    for path in paths:
        source = path.read_text()
        minimum = vermin.detect(source, path=str(path))[1]  # [Python 2, Python 3]
        if _isinstance_union(source):
            minimum = max(minimum or (3, 10), (3, 10))
        if minimum is None or minimum > DEVICE_PYTHON:
            found[path.name] = minimum
    return found


def test_the_agent_zip_holds_exactly_the_agent_files():
    with zipfile.ZipFile(io.BytesIO(agent_package())) as archive:
        names = sorted(archive.namelist())
    expected = sorted(f"toolkit/{path.relative_to(ROOT).as_posix()}" for path in agent_files())
    assert names == expected
    assert "toolkit/comparing/agent.py" in names and "toolkit/runners/litert.py" in names
    assert "toolkit/api.py" not in names  # the host's modules stay home


def test_every_file_sent_to_a_device_runs_on_python_3_9():
    assert newer_than_device(agent_files()) == {}


# Features a device's Python 3.9 lacks, with the Python that has them: the check must catch each.
NEWER = {
    "match": ("def f(x):\n    match x:\n        case 1:\n            return 2\n", (3, 10)),
    "zip_strict": ("def f(a, b):\n    return list(zip(a, b, strict=True))\n", (3, 10)),
    "slots": (
        "import dataclasses\n@dataclasses.dataclass(slots=True)\nclass A:\n    x = 0\n",
        (3, 10),
    ),
    "isinstance_union": ("def f(x):\n    return isinstance(x, int | str)\n", (3, 10)),
    "file_digest": (
        "import hashlib\nhashlib.file_digest(open(__file__, 'rb'), 'sha256')\n",
        (3, 11),
    ),
}


@pytest.mark.parametrize("feature", sorted(NEWER))
def test_a_file_that_needs_a_newer_python_is_caught(feature, tmp_path):
    source, python = NEWER[feature]
    newer = tmp_path / f"{feature}.py"
    newer.write_text(source)
    assert newer_than_device([*agent_files()[:2], newer]) == {newer.name: python}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_every_toolkit_module_the_agent_files_import_is_sent():
    """Imports inside functions count: a device has only the zip to find them in."""
    shipped = {_module_name(path) for path in agent_files()}
    outside = []
    for path in agent_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            outside += [
                (path.name, name)
                for name in names
                if name.split(".")[0] == "toolkit" and name not in shipped
            ]
    assert set(outside) <= HOST_ONLY, outside
