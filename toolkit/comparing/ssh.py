"""A device reached with the system's OpenSSH client, and the agent session compare holds on it.

One ssh process per device carries everything: the agent's code, the files, each job and each
Measurement, as frames over its stdin and stdout. One connection means one login (one host key
check, one authentication), no control socket left on disk, no scp or sftp needed on the device,
and the agent's life tied to the connection: when it closes, for whatever reason, the agent
reads the end of its input and removes its folder.
"""

from __future__ import annotations

import hashlib
import io
import re
import shlex
import struct
import subprocess
import threading
import time
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from toolkit import interrupts
from toolkit.comparing.agent import BOOTSTRAP, PROTOCOL
from toolkit.comparing.frames import Channel, ChannelClosed, ProtocolError
from toolkit.errors import ExitCode, ToolkitError

CONNECT_TIMEOUT_SECONDS = 10
HELLO_SECONDS = 60.0  # login, Python's start and the agent's imports on a slow board
REPLY_MARGIN_SECONDS = 60.0  # beyond a job's own timeout, which the agent enforces itself
MIN_TRANSFER_BYTES_PER_SECOND = 100_000
STDERR_KEPT = 16_384
MAX_REPLY_HEADER_PAYLOAD = 0  # replies other than a measurement carry no payload
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,252}")
IPV6 = re.compile(r"[0-9A-Fa-f:.]{2,45}")
PATH = re.compile(r"[A-Za-z0-9_./+@%=,:-]{1,1024}")
QUERY_KEYS = ("python", "tmpdir")
HOST_KEY_FAILED = "Host key verification failed"


class DeviceUnreachable(ToolkitError):
    """ssh could not reach the device or start the agent: its rows fail with this reason."""

    def __init__(self, message: str):
        super().__init__(message, ExitCode.ARTIFACT)


@dataclass(frozen=True)
class SshDevice:
    """Where rows run: `ssh://[user@]host[:port][?python=PATH&tmpdir=PATH]`."""

    host: str
    user: str | None = None
    port: int | None = None
    python: str = "python3"
    tmpdir: str | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        query = [f"{key}={getattr(self, key)}" for key in QUERY_KEYS if _non_default(self, key)]
        return f"ssh://{user}{host}{port}" + (f"?{'&'.join(query)}" if query else "")


def _non_default(device: SshDevice, key: str) -> bool:
    return getattr(device, key) != SshDevice.__dataclass_fields__[key].default


def parse_device(text: str) -> SshDevice:
    """The device a `--device ssh://...` string names; ToolkitError (exit 2) for anything odd."""
    try:
        return _parse(text)
    except ValueError as exc:
        raise ToolkitError(f"--device {text!r}: {exc}", ExitCode.USAGE) from None


def _parse(text: str) -> SshDevice:
    if not text.isprintable() or " " in text:
        raise ValueError("spaces or control characters")
    parts = urlsplit(text)
    if parts.scheme != "ssh":
        raise ValueError("expected ssh://[user@]host[:port][?python=PATH]")
    if parts.path not in ("", "/") or parts.fragment or parts.password is not None:
        raise ValueError("expected no path, fragment or password")
    host, user, port = parts.hostname or "", parts.username, parts.port  # port: ValueError
    if not (NAME.fullmatch(host) or (":" in host and IPV6.fullmatch(host))):
        raise ValueError(f"not a host name: {host!r}")
    if user is not None and not NAME.fullmatch(user):
        raise ValueError(f"not a user name: {user!r}")
    if port == 0:
        raise ValueError("port 0")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r} (known: {', '.join(QUERY_KEYS)})")
    values = {}
    for key, given in query.items():
        if len(given) != 1 or not PATH.fullmatch(given[0]) or given[0].startswith("-"):
            raise ValueError(f"{key}: expected one path of plain characters")
        values[key] = given[0]
    if "tmpdir" in values and not values["tmpdir"].startswith("/"):
        raise ValueError("tmpdir: expected an absolute path")
    return SshDevice(host, user, port, **values)


def ssh_command(device: SshDevice, ssh_config: Path | None, remote: str) -> list[str]:
    """The ssh call: the user's own config, keys, agent and known hosts (or `-F ssh_config`),
    never a prompt, a connect timeout, no tty and no forwarding; host keys as ssh checks them."""
    command = ["ssh"]
    if ssh_config is not None:
        command += ["-F", str(ssh_config)]
    command += ["-T", "-x", "-a", "-o", "BatchMode=yes"]
    command += ["-o", f"ConnectTimeout={CONNECT_TIMEOUT_SECONDS}", "-o", "ClearAllForwardings=yes"]
    command += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
    if device.port:
        command += ["-p", str(device.port)]
    if device.user:
        command += ["-l", device.user]
    return [*command, "--", device.host, remote]


# What the agent imports on a device, as globs under toolkit/: the base modules, compare's
# device side and the data, formats and runners packages. Only these travel, so only these
# must run on a device's Python 3.9 (tests/test_agent_sources.py checks both).
AGENT_SOURCES = (
    "__init__.py",
    "version.py",
    "errors.py",
    "results.py",
    "arrays.py",
    "interrupts.py",
    "scratch.py",
    "process.py",
    "fsio.py",
    "comparing/__init__.py",
    "comparing/agent.py",
    "comparing/frames.py",
    "comparing/worker.py",
    "comparing/data.py",
    "comparing/machine.py",
    "comparing/measurement.py",
    "data/*.py",
    "formats/*.py",
    "runners/*.py",
)


def agent_files() -> list[Path]:
    """The .py files of toolkit/ the agent zip holds, sorted."""
    root = Path(__file__).resolve().parents[1]  # toolkit/ (`import toolkit` imports the CLI)
    return sorted({path for pattern in AGENT_SOURCES for path in root.glob(pattern)})


@lru_cache(maxsize=1)
def agent_package() -> bytes:
    """The agent's modules (AGENT_SOURCES) as a zip the device's Python imports from; the same
    bytes every time, so its sha256 names the version sent."""
    root = Path(__file__).resolve().parents[1]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in agent_files():
            info = zipfile.ZipInfo(str(Path("toolkit") / path.relative_to(root)))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


class _StderrTail(threading.Thread):
    """Keeps the last STDERR_KEPT bytes ssh printed (its reasons), so the pipe never fills."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.kept = stream, b""

    def run(self) -> None:
        for chunk in iter(lambda: self.stream.read1(4096), b""):
            self.kept = (self.kept + chunk)[-STDERR_KEPT:]

    def last_line(self) -> str:
        lines = [line.strip() for line in self.kept.decode(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        return lines[-1] if lines else ""


class AgentSession:
    """One ssh connection to a device with the agent answering on the other end."""

    def __init__(self, device: SshDevice, ssh_config: Path | None = None):
        self.device, self.deadline = device, 0.0
        package = agent_package()
        remote = shlex.join(
            [
                "exec",
                device.python,
                "-c",
                BOOTSTRAP,
                hashlib.sha256(package).hexdigest(),
                *([device.tmpdir] if device.tmpdir else []),
            ]
        )
        self.process = subprocess.Popen(
            ssh_command(device, ssh_config, remote),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches toolkit, which closes the session in order
        )
        self.stderr = _StderrTail(self.process.stderr)
        self.stderr.start()
        self.channel = Channel(
            self.process.stdout.fileno(), self.process.stdin.fileno(), self._idle
        )
        try:
            self._until(HELLO_SECONDS)
            self.channel.write_all(struct.pack(">Q", len(package)) + package)
            self.channel.sync()
            self.hello = self.channel.receive(0)[0]
        except (ChannelClosed, ProtocolError, DeviceUnreachable) as exc:
            self.close()
            raise self.failure(exc) from None
        if self.hello.get("op") != "hello" or self.hello.get("protocol") != PROTOCOL:
            self.close()
            raise DeviceUnreachable(f"{device}: the agent speaks another protocol")

    def _until(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def _idle(self) -> None:
        interrupts.check()
        if time.monotonic() > self.deadline:
            raise DeviceUnreachable(f"{self.device}: no answer from the device in time")

    def _past_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise ProtocolError("the device took too long to read")

    def failure(self, exc: Exception) -> ToolkitError:
        """What went wrong, in ssh's own words when ssh ended: a host key it refused stops the
        command (exit 2); anything else fails this device's rows."""
        if isinstance(exc, DeviceUnreachable):
            return exc
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        self.stderr.join(2)
        line = self.stderr.last_line()
        if HOST_KEY_FAILED in self.stderr.kept.decode(errors="replace"):
            return ToolkitError(f"{self.device}: ssh refused the host: {line}", ExitCode.USAGE)
        if code is not None and line:
            return DeviceUnreachable(f"{self.device}: {line}")
        return DeviceUnreachable(f"{self.device}: {exc}")

    @property
    def python(self) -> str:
        return str(self.hello.get("python", self.device.python))

    def missing_package(self, runtime: str) -> str | None:
        """The package `runtime` needs that the device's Python lacks, else None."""
        entry = self.hello.get("runtimes", {}).get(runtime)
        if not isinstance(entry, dict):
            return runtime
        return None if entry.get("installed") is True else str(entry.get("package", runtime))

    def put(self, name: str, path: Path, sha256: str) -> None:
        """Sends a file once; the agent checks its sha256 on arrival."""
        self._until(HELLO_SECONDS + path.stat().st_size / MIN_TRANSFER_BYTES_PER_SECOND)
        self.channel.send({"op": "put", "name": name, "sha256": sha256}, path)
        reply, _ = self.channel.receive(0)
        if reply.get("op") != "stored" or reply.get("name") != name:
            raise DeviceUnreachable(f"{self.device}: {str(reply.get('reason', reply))[:300]}")

    def measure(self, request: dict, timeout_seconds: float, max_bytes: int) -> tuple[dict, bytes]:
        """One job's reply header and payload (a Measurement's bytes when ok)."""
        self._until(timeout_seconds + REPLY_MARGIN_SECONDS)
        self.channel.send({"op": "measure", **request})
        reply, payload = self.channel.receive(max_bytes)
        if reply.get("op") != "measured":
            raise ProtocolError(f"unexpected reply {str(reply.get('op'))[:40]!r}")
        return reply, payload

    def close(self) -> None:
        """Says bye (the agent removes its folder and exits), then ends ssh if it lingers."""
        if self.process.poll() is None:
            self.deadline = time.monotonic() + 2
            try:
                self.channel.on_wait = self._past_deadline
                self.channel.send({"op": "bye"})
            except (ChannelClosed, ProtocolError, OSError):
                pass
            self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdout.close()

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
