"""The layer contract (pyproject.toml, import-linter): it holds, and it fails on a planted import.

Imports inside functions count: the planted ones below are inside a function.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(folder: Path) -> subprocess.CompletedProcess:
    """lint-imports on the toolkit package found in `folder`, with `folder`'s pyproject.toml."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(folder)},
    )


def test_the_package_keeps_its_layers():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "toolkit's layers KEPT" in done.stdout


@pytest.mark.parametrize(
    ("module", "planted", "says"),
    [
        # Upward: a base module reaching for the CLI.
        ("errors.py", "toolkit.cli", "toolkit.errors is not allowed to import toolkit.cli"),
        # A cycle: store imports fsio, and now fsio would import store.
        ("fsio.py", "toolkit.store", "toolkit.fsio is not allowed to import toolkit.store"),
        # Sideways between independent layers: an exporter running a runtime.
        ("exporters/onnx.py", "toolkit.runners", "is not allowed to import toolkit.runners"),
    ],
)
def test_the_contract_fails_on_a_planted_import(tmp_path, module, planted, says):
    shutil.copytree(
        REPO / "toolkit", tmp_path / "toolkit", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    with open(tmp_path / "toolkit" / module, "a") as source:
        source.write(f"\n\ndef _planted():\n    import {planted}  # noqa: F401\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout[-3000:]
    assert says in done.stdout


def test_every_runner_package_is_recorded():
    """model/ and export record versions from process.RECORDED_PACKAGES, without importing the
    runner registry: the two lists must agree."""
    from toolkit.process import RECORDED_PACKAGES
    from toolkit.runners import RUNNERS

    assert {runner.package for runner in RUNNERS.values()} <= set(RECORDED_PACKAGES)


MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def test_modules_and_functions_stay_small():
    """No module over 500 lines and no function over 60 (decorators and docstring included)."""
    import ast

    too_long = []
    for path in sorted((REPO / "toolkit").rglob("*.py")):
        source = path.read_text()
        name = path.relative_to(REPO)
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if (lines := node.end_lineno - start + 1) > MAX_FUNCTION_LINES:
                    too_long.append(f"{name}:{start} {node.name}: {lines} lines")
    assert not too_long, "\n".join(too_long)


def test_cli_and_api_share_one_command_table():
    """Every CLI command runs through api.COMMANDS, and toolkit's API names are that table's."""
    import toolkit
    from toolkit.api import COMMANDS
    from toolkit.cli.app import app

    assert {command.callback.__name__ for command in app.registered_commands} == set(COMMANDS)
    assert set(toolkit.API) == set(COMMANDS)
