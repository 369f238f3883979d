"""The agent compare runs on a device: receives files and jobs over stdin, measures each job with
the same `measure_job` the local executor uses, and sends back each `Measurement.to_bytes()`.

`python -m toolkit.comparing.agent serve FOLDER` answers frames (toolkit.comparing.frames) on its
stdin/stdout; each job runs in `python -m toolkit.comparing.agent measure FOLDER`, a child process
it stops on a timeout, on memory over the cap, or when the connection closes. Everything lives
in FOLDER (a private temp folder made by BOOTSTRAP) and is removed when the agent ends, whatever
ends it; folders of agents that died without removing theirs go at the next start. Imports stay
light (numpy, the runtime, the standard library): a device has only Python 3.9+ and those.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from toolkit.comparing.frames import MAGIC, Channel, ChannelClosed, ProtocolError

PROTOCOL = 1
FOLDER_PREFIX = "toolkit-agent-"
PID_NAME = "agent.pid"
WORKER_PID_NAME = "worker.pid"
FILES = "files"  # what the host sent: artifacts and the evaluation items, by plain name
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_FILE_BYTES = 1 << 34
STALE_SECONDS = 600  # a folder with no pid file this old died before its agent started
WAIT_SECONDS = 0.05
LOG_TAIL = 4096

# Run by the device's Python as `python -c BOOTSTRAP SHA256 [TMPDIR]`: reads the zip of toolkit's
# modules from stdin (checked against SHA256), writes it into a new private temp folder and
# becomes the agent. os.read, not sys.stdin: a buffered read would swallow the first frames.
BOOTSTRAP = """\
import hashlib, os, struct, sys, tempfile
def read(count):
    data = b""
    while len(data) < count:
        chunk = os.read(0, count - len(data))
        if not chunk:
            sys.exit("toolkit agent: the connection closed while the agent was sent")
        data += chunk
    return data
size, = struct.unpack(">Q", read(8))
if size > 1 << 28:
    sys.exit("toolkit agent: the agent sent is too large")
package = read(size)
if hashlib.sha256(package).hexdigest() != sys.argv[1]:
    sys.exit("toolkit agent: the agent arrived damaged (sha256 mismatch)")
folder = tempfile.mkdtemp(prefix="toolkit-agent-", dir=(sys.argv[2:] or [None])[0])
path = os.path.join(folder, "toolkit.zip")
with open(path, "wb") as file:
    file.write(package)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [path, os.environ.get("PYTHONPATH")]))
os.execv(sys.executable, [sys.executable, "-m", "toolkit.comparing.agent", "serve", folder])
"""


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (/proc), so a reused pid is not taken
    for a live agent; "" where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(marker: str) -> bool:
    """Whether the agent a pid file names ("pid start-time") still runs."""
    try:
        pid_text, started = (marker.split() + [""])[:2]
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return not started or _start_time(pid) in ("", started)


def remove_stale(parent: Path, own: Path) -> None:
    """Removes this user's agent folders under `parent` whose agent is gone."""
    for entry in parent.iterdir():
        if not entry.name.startswith(FOLDER_PREFIX) or entry == own:
            continue
        with contextlib.suppress(OSError):
            info = entry.lstat()
            if not entry.is_dir() or entry.is_symlink() or info.st_uid != os.getuid():
                continue
            marker = entry / PID_NAME
            if marker.is_file():
                stale = not _alive(marker.read_text()[:100])
            else:
                stale = time.time() - info.st_mtime > STALE_SECONDS
            if stale:
                shutil.rmtree(entry, ignore_errors=True)


def hello() -> dict:
    """The first frame: this Python, the machine, and which runtimes' packages it has."""
    import importlib.util

    from toolkit.comparing.machine import describe_machine
    from toolkit.runners import RUNNERS

    runtimes = {
        name: {
            "package": runner.package,
            "installed": importlib.util.find_spec(runner.module.split(".")[0]) is not None,
        }
        for name, runner in RUNNERS.items()
    }
    packages = tuple(runner.package for runner in RUNNERS.values())
    return {
        "op": "hello",
        "protocol": PROTOCOL,
        "python": sys.executable,
        "machine": describe_machine(packages),
        "runtimes": runtimes,
    }


class Agent:
    """One agent's folder, its channel to the host and the job running now."""

    def __init__(self, folder: Path, channel: Channel):
        self.folder, self.channel = folder, channel
        self.files = folder / FILES
        self.files.mkdir(exist_ok=True)
        self.worker: subprocess.Popen | None = None

    def serve(self) -> None:
        """Answers frames until the host says bye or goes away."""
        while True:
            header, size = self.channel.receive_header(MAX_FILE_BYTES)
            if header["op"] == "put":
                self.put(header, size)
            elif header["op"] == "measure" and size == 0:
                self.channel.send(*self.measure(header))
            elif header["op"] == "bye":
                return
            else:
                raise ProtocolError(f"unexpected frame {header['op']!r}")

    def put(self, header: dict, size: int) -> None:
        """Stores a file under its plain name, checked against the sha256 the host gave."""
        name, expected = header.get("name"), header.get("sha256")
        if not (isinstance(name, str) and PLAIN_NAME.fullmatch(name)):
            raise ProtocolError(f"a file name toolkit does not send: {name!r}")
        if not (isinstance(expected, str) and SHA256.fullmatch(expected)):
            raise ProtocolError(f"{name}: no sha256")
        digest, path = hashlib.sha256(), self.files / name
        with path.open("wb") as file:

            def sink(chunk: bytes) -> None:
                digest.update(chunk)
                file.write(chunk)

            self.channel.receive_into(size, sink)
        if digest.hexdigest() != expected:
            path.unlink()
            self.channel.send({"op": "error", "reason": f"{name} arrived damaged (sha256)"})
        else:
            self.channel.send({"op": "stored", "name": name})

    def measure(self, header: dict) -> tuple[dict, bytes]:
        """Runs one job in a child process; the reply frame and its payload."""
        for name in ("result.bin", "status.json", "worker.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()
        request = {"job": header.get("job"), "data": header.get("data")}
        (self.folder / "job.json").write_text(json.dumps(request))
        settings = request["job"]["settings"] if isinstance(request["job"], dict) else {}
        env = {"OPENBLAS_NUM_THREADS": "1", **os.environ, "TMPDIR": str(self._scratch())}
        with (self.folder / "worker.log").open("wb") as log:
            self.worker = subprocess.Popen(
                [sys.executable, "-m", "toolkit.comparing.agent", "measure", str(self.folder)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )
        (self.folder / WORKER_PID_NAME).write_text(str(self.worker.pid))
        problem = self._wait(
            float(settings.get("timeout_seconds", 300)), float(settings.get("max_memory_mb", 0))
        )
        return self._reply(problem)

    def _scratch(self) -> Path:
        """The worker's temp folder: runtimes' scratch stays inside the agent's folder."""
        scratch = self.folder / "tmp"
        scratch.mkdir(exist_ok=True)
        return scratch

    def _wait(self, timeout_seconds: float, max_memory_mb: float) -> str | None:
        """Waits for the worker; the reason it was stopped, if it was. The host sends nothing
        while a job runs, so input on stdin can only be its end: then the agent stops."""
        from toolkit.process import rss_mb

        deadline = time.monotonic() + timeout_seconds
        worker = self.worker
        while worker.poll() is None:
            if select.select([self.channel.read_fd], [], [], WAIT_SECONDS)[0]:
                if not os.read(self.channel.read_fd, 1):
                    raise ChannelClosed("the host closed the connection")
                raise ProtocolError("the host sent a frame while a job ran")
            problem = None
            if max_memory_mb and rss_mb(worker.pid) > max_memory_mb:
                problem = f"stopped: used more than --max-memory {max_memory_mb:g} MB"
            elif time.monotonic() > deadline:
                problem = f"timed out after {timeout_seconds:g} s"
            if problem:
                self.stop_worker()
                return problem
        return None

    def _reply(self, problem: str | None) -> tuple[dict, bytes]:
        from toolkit.process import describe_exit

        if problem:
            return {"op": "measured", "status": "failed", "reason": problem}, b""
        status_path = self.folder / "status.json"
        if not status_path.is_file():
            reason = describe_exit(self.worker.returncode)
            tail = _log_tail(self.folder / "worker.log")
            return {"op": "measured", "status": "failed", "reason": f"{reason}{tail}"}, b""
        status = json.loads(status_path.read_text())
        if status.get("status") != "ok":
            return {"op": "measured", **status}, b""
        return {"op": "measured", "status": "ok"}, (self.folder / "result.bin").read_bytes()

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            self.worker.wait()


def _log_tail(path: Path) -> str:
    """ ": " and the worker's last line of output, when it printed any."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL))
            lines = log.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return f": {lines[-1].strip()[:300]}" if lines else ""


def _raise_exit(signum, frame) -> None:
    raise SystemExit(128 + signum)


def serve(folder: Path) -> None:
    """The agent's life: answer the host until it leaves, then remove `folder`, whatever ends it
    (bye, end of input, SIGTERM, SIGHUP, SIGINT)."""
    agent = None
    try:
        # Frames go to a private copy of stdout; fd 1 becomes stderr, so text a library prints
        # can never land inside a frame.
        frames_fd = os.dup(1)
        os.dup2(2, 1)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, _raise_exit)
        (folder / PID_NAME).write_text(f"{os.getpid()} {_start_time(os.getpid())}")
        remove_stale(folder.parent, folder)
        channel = Channel(0, frames_fd)
        channel.write_all(MAGIC)
        channel.send(hello())
        agent = Agent(folder, channel)
        agent.serve()
    except (ChannelClosed, ProtocolError, SystemExit, KeyboardInterrupt):
        pass
    finally:
        if agent is not None:
            agent.stop_worker()
        shutil.rmtree(folder, ignore_errors=True)


def measure_in_folder(folder: Path) -> None:
    """The worker: measures FOLDER/job.json's job and writes result.bin and status.json."""
    from toolkit.comparing.data import EvalData
    from toolkit.comparing.measurement import Job
    from toolkit.comparing.worker import measure_job
    from toolkit.data import Preprocessing
    from toolkit.process import _die_with_parent
    from toolkit.runners.base import attempt

    _die_with_parent(os.getppid())
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def task() -> bytes:
        request = json.loads((folder / "job.json").read_text())
        job, spec = Job.from_json(request["job"]), request["data"]
        for name in (job.artifact, spec["items"]):
            if not PLAIN_NAME.fullmatch(name) or not (folder / FILES / name).is_file():
                raise ValueError(f"{name}: not among the files sent")
        preprocessing = Preprocessing(float(spec["scale"]), float(spec["offset"]))
        shape = tuple(int(d) for d in spec["input_shape"])
        data = EvalData(folder / FILES / spec["items"], preprocessing, shape)
        return measure_job(job, folder / FILES / job.artifact, data).to_bytes()

    status, result = attempt(request_runtime(folder), task)
    if status == "ok":
        (folder / "result.bin").write_bytes(result)
        status_json = {"status": "ok"}
    elif status == "error":
        status_json = {"status": "failed", "reason": result[0]}
    else:
        status_json = {"status": status, "reason": str(result)}
    (folder / "status.json").write_text(json.dumps(status_json))


def request_runtime(folder: Path) -> str:
    """The runtime the job names, for the reason of a failure ("?" when unreadable)."""
    with contextlib.suppress(Exception):
        return str(json.loads((folder / "job.json").read_text())["job"]["runtime"])
    return "?"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("serve", "measure"):
        print("usage: python -m toolkit.comparing.agent serve|measure FOLDER", file=sys.stderr)
        return 2
    folder = Path(argv[1])
    if argv[0] == "serve":
        serve(folder)
    else:
        measure_in_folder(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
