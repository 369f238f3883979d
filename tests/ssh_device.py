"""A real OpenSSH server on loopback and a "device" Python, for the tests of `--device ssh://`.

Everything lives in a temp folder: a throwaway host key, client key, authorized_keys and client
config (used through `--ssh-config`, since OpenSSH reads the account's own ~/.ssh, not $HOME).
The device Python is a plain venv holding only numpy, ai-edge-litert and onnxruntime at the
host's versions (no TensorFlow), built once and kept under the system temp folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

SSHD = "/usr/sbin/sshd"
ALIAS = "toolkit-device"
DEVICE_PACKAGES = ("numpy", "ai-edge-litert", "onnxruntime")
START_SECONDS = 10.0


@dataclass(frozen=True)
class SshDevice:
    """A running sshd and how to reach it: `ssh -F config ALIAS` logs in without a prompt."""

    folder: Path
    port: int
    config: Path  # client config: Host ALIAS with HostName, Port, IdentityFile, known hosts
    known_hosts: Path
    python: Path  # the device venv's python
    process: subprocess.Popen

    def url(self, python: Path | None = None, **query: str) -> str:
        """`ssh://ALIAS?python=...` for this device (another python or extra query keys)."""
        pairs = {"python": str(python or self.python), **query}
        return f"ssh://{ALIAS}?" + "&".join(f"{key}={value}" for key, value in pairs.items())


def sshd_available() -> bool:
    return Path(SSHD).is_file() and shutil.which("ssh") is not None and shutil.which("ssh-keygen")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path) -> str:
    """A new ed25519 key pair at `path`; returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "toolkit-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path.with_suffix(".pub").read_text().strip()


def write_client_config(folder: Path, port: int, known_hosts: Path, name: str = "config") -> Path:
    """A client config for ALIAS trusting only the keys in `known_hosts`."""
    config = folder / name
    config.write_text(
        f"Host {ALIAS}\n"
        "  HostName 127.0.0.1\n"
        f"  Port {port}\n"
        f"  User {_user()}\n"
        f"  IdentityFile {folder / 'client_key'}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  LogLevel ERROR\n"
    )
    return config


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _server_config(folder: Path, port: int) -> Path:
    config = folder / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1:{port}\n"
        f"HostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\n"
        f"PidFile {folder / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        # pytest's temp folders are not owned the way StrictModes wants for a home directory.
        "StrictModes no\n"
        "LogLevel ERROR\n"
    )
    return config


def _wait_for_banner(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.settimeout(1)
            if s.recv(64).startswith(b"SSH-"):
                return
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on 127.0.0.1:{port}")


def start_sshd(folder: Path, python: Path) -> SshDevice:
    """sshd -D on a free loopback port as this user, with keys and configs made in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    host_public = _keygen(folder / "host_key")
    (folder / "authorized_keys").write_text(_keygen(folder / "client_key") + "\n")
    # sshd's privilege separation needs this folder (Debian's service creates it at boot).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    for _attempt in range(3):  # a port found free can be taken before sshd binds it
        port = free_port()
        known_hosts = folder / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_public}\n")
        config = write_client_config(folder, port, known_hosts)
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(_server_config(folder, port))],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(folder / "sshd.log").open("ab"),
        )
        try:
            _wait_for_banner(port, process)
        except RuntimeError:
            stop_sshd(process)
            continue
        return SshDevice(folder, port, config, known_hosts, python, process)
    raise RuntimeError(f"sshd did not start: {(folder / 'sshd.log').read_text()[-500:]}")


def stop_sshd(process: subprocess.Popen) -> None:
    """Stops the listening sshd; sessions it forked end with their connections."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _venv_key() -> str:
    """The device venv's identity: the host's base Python and its versions of the packages."""
    versions = [f"{name}=={metadata.version(name)}" for name in DEVICE_PACKAGES]
    text = "\n".join([sys.base_prefix, sys.version, *versions])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _base_python() -> Path:
    """The interpreter the host venv was made from (not the venv: its packages stay out)."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (Path(sys.base_prefix) / "bin" / name, Path(sys.base_prefix) / "bin/python3"):
        if candidate.exists():
            return candidate
    raise RuntimeError(f"no base interpreter under {sys.base_prefix}")


def _constraints(folder: Path) -> Path:
    """The host's exact versions of everything installed, so the device runs the same runtimes."""
    pins = sorted(
        f"{dist.metadata['Name']}=={dist.version}"
        for dist in metadata.distributions()
        if dist.metadata["Name"]
    )
    path = folder / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def device_venv(root: Path | None = None) -> Path:
    """The device venv's python, built once per set of versions (pip's cache makes a rebuild
    quick); concurrent test workers wait on a lock rather than building it twice."""
    root = Path(tempfile.gettempdir()) if root is None else root
    final = root / f"toolkit-test-device-venv-{_venv_key()}"
    python, complete = final / "bin" / "python", final / ".complete"
    if complete.exists():
        return python
    with (root / f"{final.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return python
        shutil.rmtree(final, ignore_errors=True)  # a build that died half-way
        building = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=root))
        try:
            subprocess.run([str(_base_python()), "-m", "venv", str(final)], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run(
                [*pip, "--no-input", "-c", str(_constraints(building)), *DEVICE_PACKAGES],
                check=True,
                stdin=subprocess.DEVNULL,
            )
            complete.touch()
        except BaseException:
            shutil.rmtree(final, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return python


def venv_without(python: Path, folder: Path, package: str) -> Path:
    """A venv whose site-packages links every entry of `python`'s venv except `package`: a device
    Python that lacks one runtime, made in a second instead of a fresh install."""
    source_venv = python.parent.parent
    subprocess.run(
        [str(python), "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True
    )
    (site,) = (folder / "lib").glob("python*/site-packages")
    (source_site,) = (source_venv / "lib").glob("python*/site-packages")
    module = package.replace("-", "_")
    for entry in source_site.iterdir():
        if entry.name == module or entry.name.startswith(f"{module}-"):
            continue
        target = site / entry.name
        if not target.exists():
            target.symlink_to(entry)
    return folder / "bin" / "python"
