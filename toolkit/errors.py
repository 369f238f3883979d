"""The one exception type of the library and the exit codes the CLI maps it to."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (README, "Exit codes")."""

    OK = 0
    GATE = 1  # compare: an accuracy or latency gate failed
    USAGE = 2
    DATASET = 3
    ARTIFACT = 4
    CONVERSION = 5
    IO = 6  # disk full, read-only output, output folder locked
    INTERRUPTED = 130


class ToolkitError(Exception):
    """An error a user can act on: one line, naming the file and what is wrong."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE):
        super().__init__(message)
        self.code = code
