"""Executor registry: where compare's rows run; adding one is one module plus one line here."""

from toolkit.comparing.executors.base import Executor, Outcome
from toolkit.comparing.executors.local import LocalExecutor
from toolkit.comparing.executors.ray import RayExecutor
from toolkit.comparing.executors.ssh import SshExecutor

EXECUTORS: dict[str, type] = {
    "local": LocalExecutor,
    "ssh": SshExecutor,
    "ray": RayExecutor,
}

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "Outcome", "RayExecutor", "SshExecutor"]
