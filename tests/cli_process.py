"""`toolkit` commands as real processes for the tests that signal, kill or starve them, forked
from the test worker's fork server (toolkit's own, which has imported TensorFlow) instead of
started as `python -m toolkit`: such a process then skips the seconds of TensorFlow's import
that came before every one of them. What is tested runs as it does from the command line: its
own process, its own signal handlers, its exit code (a signal's as -N), stdout and stderr.
A test about a whole fresh interpreter (its imports, its temp folder) starts one instead."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from toolkit.process import TENSORFLOW_SERVER, fork_server

# The test worker's TensorFlow server, which then also imports these (if it starts it).
ALSO_PRELOAD = ("toolkit.cli", __name__)


def _command(
    argv: list[str],
    environment: dict,
    stdout: str,
    stderr: str,
    prepare: Callable[[], None] | None,
) -> None:
    """The forked process: this test's environment and files, then the CLI as `toolkit ARGV`."""
    import signal

    os.environ.clear()
    os.environ.update(environment)
    tempfile.tempdir = None  # read again from TMPDIR
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(target, fd)
        os.close(target)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    if prepare is not None:
        prepare()
    sys.argv = ["toolkit", *argv]
    from toolkit import main

    main()


class CliProcess:
    """`toolkit ARGS` started now, with the parts of `subprocess.Popen` the tests use.
    `prepare`, a module-level function, runs in the process first (e.g. to limit its files)."""

    def __init__(self, *args, env: dict | None = None, prepare: Callable[[], None] | None = None):
        context = fork_server((TENSORFLOW_SERVER,), ALSO_PRELOAD)
        assert context is not None, "no fork server (a temp folder path too long for its socket)"
        self._folder = Path(tempfile.mkdtemp(prefix="cli-"))
        self._stdout, self._stderr = self._folder / "stdout", self._folder / "stderr"
        environment = {**os.environ, **(env or {})}
        argv = [str(arg) for arg in args]
        self._process = context.Process(
            target=_command,
            args=(argv, environment, str(self._stdout), str(self._stderr), prepare),
        )
        self._process.start()
        self.pid = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(["toolkit"], timeout)
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """(stdout, stderr) once the process has ended."""
        self.wait(timeout)
        try:
            return self._stdout.read_text(errors="replace"), self._stderr.read_text(
                errors="replace"
            )
        finally:
            import shutil

            shutil.rmtree(self._folder, ignore_errors=True)


def run_cli(*args, timeout: float = 300, **options) -> subprocess.CompletedProcess:
    """`toolkit ARGS` to its end, as `subprocess.run(..., capture_output=True, text=True)`."""
    process = CliProcess(*args, **options)
    try:
        stdout, stderr = process.communicate(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(["toolkit", *args], process.returncode, stdout, stderr)
