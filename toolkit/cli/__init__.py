"""The `toolkit` command line: options (types and limits), render (printing, errors, progress)
and app (the Typer commands)."""

from toolkit.cli.app import app
from toolkit.cli.options import Format, Runtime

__all__ = ["Format", "Runtime", "app"]
