"""Executor registry: where compare's rows run; adding one is one module plus one line here."""

from toolkit.compare.executors.base import Executor, Outcome
from toolkit.compare.executors.local import LocalExecutor
from toolkit.compare.executors.ray import RayExecutor
from toolkit.compare.executors.ssh import SshExecutor

EXECUTORS: dict[str, type] = {
    "local": LocalExecutor,
    "ssh": SshExecutor,
    "ray": RayExecutor,
}

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "Outcome", "RayExecutor", "SshExecutor"]
