"""The one exception type of the library and the exit codes the CLI maps it to."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (README, "Exit codes")."""

    GATE = 1  # compare: an accuracy or latency gate failed
    USAGE = 2
    DATASET = 3
    ARTIFACT = 4
    CONVERSION = 5
    IO = 6  # disk full, read-only output, output folder locked
    INTERNAL = 70  # a bug in toolkit or a library it calls (sysexits' EX_SOFTWARE)
    INTERRUPTED = 130


class ToolkitError(Exception):
    """An error a user can act on: one line, naming the file and what is wrong."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE):
        super().__init__(message)
        self.code = code


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries raise pages), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ToolkitWarning(UserWarning):
    """Something a user should know that does not stop the command (the CLI prints one line)."""


def warn(message: str) -> None:
    import warnings

    warnings.warn(message, ToolkitWarning, stacklevel=2)
