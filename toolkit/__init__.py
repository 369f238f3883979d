"""Edge-deployment model conversion toolkit: train, export, compare."""

import os

# TensorFlow reads these at import time; setting them here (cheap, no TF import) keeps every
# entry point quiet without each module having to remember.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from toolkit.version import __version__  # noqa: E402 - after the environment above


def main() -> None:
    """The `toolkit` command. Its console script imports only this package: every process the
    command spawns re-runs that script first, and would otherwise import the CLI (typer, rich)
    just to measure a model or draw a figure."""
    from toolkit.cli import app

    app()


API = ("compare", "export", "predict", "report", "train", "verify")


def __getattr__(name: str):
    """The Python API, imported on first use (PEP 562): a worker or figure process, which
    imports `toolkit.comparing.worker` or `toolkit.figures`, then skips the exporters' imports."""
    if name in API:
        from toolkit import api

        return getattr(api, name)
    raise AttributeError(f"module 'toolkit' has no attribute {name!r}")


__all__ = ["__version__", "compare", "export", "main", "predict", "report", "train", "verify"]
