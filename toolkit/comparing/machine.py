"""A description of the machine a row was measured on, from the standard library and /proc."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from toolkit.process import library_versions


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def describe_machine(packages: tuple[str, ...] = ()) -> dict:
    """Hostname, CPU model, cores, architecture, OS, Python and the versions of `packages`."""
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": library_versions(packages),
    }
