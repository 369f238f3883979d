"""Child processes and the process itself: quiet and frozen imports, isolated workers, memory.

Everything here uses the standard library only, so a worker on a small device can import it.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from toolkit import interrupts

POLL_SECONDS = 0.1  # how often a waiting parent looks at interrupts and its worker's memory
# ...and while a worker waits on the parent to pace it (load, start the next, time): a long
# poll there is idle time added to every row, three waits per row.
HANDOFF_POLL_SECONDS = 0.01
PR_SET_PDEATHSIG = 1  # prctl(2): a signal the kernel sends when the parent dies

# What every spawned process of toolkit's gets in its environment, unless the user set it: its
# numpy only reshapes and stacks (runtimes bring their own threads), and OpenBLAS starting a
# thread per core costs CPU at numpy's import while the other workers import too.
CHILD_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1"}

# What a fork server preloads for workers that need TensorFlow (its module imports it).
TENSORFLOW_SERVER = "toolkit.tensorflow_server"


@contextlib.contextmanager
def quiet_stderr():
    """Mutes file descriptor 2: TF, LiteRT and the converters print C++ notes there directly."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """Imports TensorFlow quietly (its CUDA-probing notes ignore TF_CPP_MIN_LOG_LEVEL) and
    frozen (`import_frozen`)."""
    with quiet_stderr(), without_matplotlib():
        tensorflow = import_frozen("tensorflow")
    skip_final_collection()  # TensorFlow's objects make the exit's collection slow
    return tensorflow


def import_frozen(name: str):
    """Imports module `name` with garbage collection paused, then freezes every object alive
    (`gc.freeze`), so that later collections skip them.

    For a process's large first imports: TensorFlow's leaves objects that live as long as the
    process, and every full collection (its import runs some, TF's converter one per conversion)
    would scan them all again. Only a module's first import does this: freezing later would
    also freeze the garbage cycles alive at that moment, for good.
    """
    import gc
    import importlib
    import sys

    if name in sys.modules:
        return sys.modules[name]
    enabled = gc.isenabled()
    gc.disable()
    try:
        return importlib.import_module(name)
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextlib.contextmanager
def without_matplotlib():
    """TensorFlow imports all of Keras, whose image-gallery helpers import pyplot when they can,
    for plotting toolkit never asks Keras for (its figures are drawn in processes of their own).
    While TensorFlow imports, matplotlib is made unimportable, so Keras leaves those helpers
    without it; afterwards it imports as usual. A process that imported it already is left alone."""
    import sys

    if "matplotlib" in sys.modules:
        yield
        return
    sys.modules["matplotlib"] = None
    try:
        yield
    finally:
        if sys.modules.get("matplotlib", 0) is None:
            del sys.modules["matplotlib"]


def start_child(process) -> None:
    """Starts a spawned multiprocessing `process` with CHILD_ENVIRONMENT in its environment;
    this process's own environment is as before once it has started."""
    with _child_environment():
        process.start()


@contextlib.contextmanager
def _child_environment():
    """CHILD_ENVIRONMENT added to this process's environment (where the user did not set it)
    while a child process starts."""
    added = {key: value for key, value in CHILD_ENVIRONMENT.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def skip_final_collection() -> None:
    """Interpreter shutdown runs one last garbage collection over every object alive, though at
    exit the OS reclaims everything anyway: freeze them first. Only cyclic garbage is affected;
    atexit handlers and refcount frees still run."""
    import atexit
    import gc

    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


# The distributions whose versions shape the results, recorded beside every output: the
# converters, then each runtime's (the RUNNERS' `package`; a test keeps the two in step).
RECORDED_PACKAGES = (
    "tensorflow",
    "keras",
    "numpy",
    "onnx",
    "tf2onnx",
    "ai-edge-litert",
    "onnxruntime",
    "tflite-micro",
    "openvino",
)


def recorded_versions() -> dict[str, str]:
    """Versions of toolkit and of the libraries that shape the results (RECORDED_PACKAGES)."""
    from toolkit.version import __version__

    return {"toolkit": __version__, **library_versions(RECORDED_PACKAGES)}


def library_versions(packages: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The installed version of each distribution in `packages` ("not installed" if absent)."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in dict.fromkeys(packages):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def default_max_memory_mb() -> int:
    """Half the machine's RAM: one worker runs at a time; the parent and the system need room."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 // (1 << 20)


def rss_mb(pid: int, field: str = "VmRSS:") -> float:
    """Resident memory of a live process in MB, now (VmRSS) or at its peak (VmHWM); 0 when it
    is gone or /proc says nothing."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    kb = next((line.split()[1] for line in status.splitlines() if line.startswith(field)), 0)
    return int(kb) / 1024


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent at fork, so every worker
    would report at least the parent's size; ru_maxrss only where /proc is missing.
    """
    import resource

    peak = rss_mb(os.getpid(), "VmHWM:")
    return peak or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _die_with_parent(parent: int) -> None:
    """The kernel kills this process when its parent dies (kill -9 included), so a worker never
    runs on, unwatched, for up to its timeout; Linux only (elsewhere the parent's kill does)."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)


def _isolated_entry(parent: int | None, target, *args) -> None:
    """What every worker does first: die with its parent (None: whoever forked it, a fork
    server), leave Ctrl-C to the parent (which stops it), and keep its scratch in a private temp
    folder removed when it ends."""
    from toolkit.scratch import private_tempdir

    _die_with_parent(os.getppid() if parent is None else parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with private_tempdir():
        target(*args)


def describe_exit(code: int | None) -> str:
    """Why a worker ended without sending anything, from its exit code."""
    if code is not None and code < 0:
        return f"worker crashed ({signal.Signals(-code).name})"
    return f"worker exited with code {code} before reporting"


class IsolatedRun:
    """`target(connection, *args)` in a spawned process: started now, waited for later, so the
    next worker can import while this one works. A crash, a hang or memory over
    `max_memory_mb` stops it and becomes ("error", reason).

    With `preload` (module names), the process is forked from this process's fork server of
    `preload` (`fork_server`), which imported them once: the workers skip a new interpreter's
    start and those imports (TensorFlow's the longest). The server never runs anything else,
    so each worker still starts from a clean state."""

    def __init__(
        self,
        target,
        args: tuple,
        timeout_seconds: float,
        max_memory_mb: float,
        preload: Sequence[str] = (),
    ):
        context, self._forked = _worker_context("spawn", preload, target)
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = _started(context, self._forked, target, sender, args)
        sender.close()
        self.timeout_seconds, self.max_memory_mb = timeout_seconds, max_memory_mb

    def result(self, on_poll: Callable[[], bool | None] = lambda: None) -> tuple:
        """What the worker sends; the wait checks for interrupts (Ctrl-C stops the worker at
        once) and calls `on_poll` every POLL_SECONDS, or every HANDOFF_POLL_SECONDS while it
        returns True (it is pacing the worker)."""
        try:
            return _reply(
                self._process, self._receiver, self.timeout_seconds, self.max_memory_mb, on_poll
            )
        finally:
            self.stop()

    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self) -> None:
        """Ends the worker (it may still be tidying up after it sent) and removes what that
        left of its private temp folder."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._receiver.close()
        _remove_worker_tempdirs(self._process.pid, self._forked)


def _worker_context(start_method: str, preload: Sequence[str], target):
    """(the multiprocessing context a worker starts in, whether a fork server forks it): the
    fork server of `preload` (which also imported `target`'s module if it started it) when
    there is one, else `start_method`."""
    if preload and start_method == "spawn":
        context = fork_server(preload, also=(target.__module__,))
        if context is not None:
            return context, True
    return multiprocessing.get_context(start_method), False


def _started(context, by_server: bool, target, connection, args: tuple):
    """The worker process running `target(connection, *args)`, started. One a fork server
    forked dies with that server; any other with this process."""
    parent = None if by_server else os.getpid()
    process = context.Process(
        target=_isolated_entry, args=(parent, target, connection, *args), daemon=True
    )
    start_child(process)
    return process


def _remove_worker_tempdirs(pid: int, by_server: bool) -> None:
    from toolkit.scratch import system_tempdir

    # A forked worker's temp folder is under the fork server's, a spawned one's under ours.
    with system_tempdir() if by_server else contextlib.nullcontext():
        remove_private_tempdirs(pid)


def fork_server(preload: Sequence[str], also: Sequence[str] = ()):
    """A forkserver context whose processes are forked from this process's fork server of
    `preload` (`toolkit.fork_servers`: one per distinct `preload`, kept until the process
    exits), started on first use with `preload` and `also` imported and this process's
    environment before any private temp folder: the server, its socket and the workers it forks
    outlive such a folder. None when it cannot start (its socket's path in a long TMPDIR is
    over the kernel's limit)."""
    from toolkit import fork_servers
    from toolkit.scratch import system_tempdir

    key = tuple(preload)
    try:
        with system_tempdir(), _child_environment():
            fork_servers.server(key, tuple(also)).ensure_running()
    except OSError:
        return None
    return fork_servers.ServerContext(key)


def _reply(process, receiver, timeout_seconds: float, max_memory_mb: float, on_poll) -> tuple:
    """What `process` sends on `receiver`, or ("error", why) when it crashes, hangs past
    `timeout_seconds` or holds more than `max_memory_mb`; interrupts are checked meanwhile."""
    deadline = time.monotonic() + timeout_seconds
    pacing = on_poll()
    # poll() is also True once the worker died.
    while not receiver.poll(HANDOFF_POLL_SECONDS if pacing else POLL_SECONDS):
        interrupts.check()
        pacing = on_poll()
        if rss_mb(process.pid) > max_memory_mb:
            return "error", f"stopped: used more than --max-memory {max_memory_mb:g} MB"
        if time.monotonic() > deadline:
            return "error", f"timed out after {timeout_seconds:g} s"
    try:
        return receiver.recv()
    except (EOFError, ConnectionResetError):  # the worker died before sending anything
        process.join(5)
        return "error", describe_exit(process.exitcode)


class RequestWorker:
    """`target(connection, *args)` in a spawned, isolated process that answers requests one at a
    time, for work whose imports cost more than the work (a converter): started once, asked
    many times. The worker answers with any status but "error", which is this side's: a
    crash, a hang or memory over `max_memory_mb` stops it, and it is then `broken`. "fork"
    as `start_method` only where the caller knows forking this process is safe; with `preload`
    a spawned worker is forked from the fork server of `preload` instead (`IsolatedRun`)."""

    def __init__(
        self,
        target,
        args: tuple,
        max_memory_mb: float,
        start_method: str = "spawn",
        preload: Sequence[str] = (),
    ):
        context, self._forked = _worker_context(start_method, preload, target)
        self._connection, child_end = context.Pipe()
        self._process = _started(context, self._forked, target, child_end, args)
        child_end.close()
        self.max_memory_mb, self.broken = max_memory_mb, False

    def ask(self, request, timeout_seconds: float) -> tuple:
        """Sends `request` and returns the worker's (status, payload), or ("error", why)."""
        if not self.send(request):
            return "error", describe_exit(self._process.exitcode)
        return self.receive(timeout_seconds)

    def send(self, request) -> bool:
        """Sends `request` without waiting for the answer; False when the worker is gone."""
        try:
            self._connection.send(request)
        except (BrokenPipeError, ConnectionResetError, OSError):  # it died while idle
            self._process.join(5)
            self.stop()
            return False
        return True

    def receive(self, timeout_seconds: float) -> tuple:
        """The worker's next (status, payload), or ("error", why)."""
        answer = _reply(
            self._process, self._connection, timeout_seconds, self.max_memory_mb, lambda: None
        )
        if answer[0] == "error":
            self.stop()
        return answer

    def stop(self) -> None:
        """Ends the worker (at once: it may be hung) and removes what a crash left of its
        private temp folder."""
        self.broken = True
        if self._process.is_alive():
            self._process.kill()
        self._process.join(5)
        self._connection.close()
        _remove_worker_tempdirs(self._process.pid, self._forked)


def remove_private_tempdirs(pid: int) -> None:
    """Removes process `pid`'s private temp folders (`toolkit.scratch`): one that crashed or was
    killed never ran its own clean-up."""
    import shutil
    import tempfile

    for folder in Path(tempfile.gettempdir()).glob(f"toolkit-{pid}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def run_isolated(
    target, args: tuple, timeout_seconds: float, max_memory_mb: float, preload: Sequence[str] = ()
) -> tuple:
    """Runs `target(connection, *args)` in a spawned process (forked from the fork server of
    `preload`, as `IsolatedRun`) and returns what it sends."""
    return IsolatedRun(target, args, timeout_seconds, max_memory_mb, preload).result()
