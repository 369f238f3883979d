"""Executor registry: where compare's rows run; adding one is one module plus one line here."""

from toolkit.compare.executors.base import Executor, Outcome
from toolkit.compare.executors.local import LocalExecutor

EXECUTORS: dict[str, type] = {
    "local": LocalExecutor,
}

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "Outcome"]
