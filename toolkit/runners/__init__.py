"""Runtime registry: one runner per runtime; adding a runtime is one file plus one line here."""

from pathlib import PurePath

from toolkit.runners.base import Runner
from toolkit.runners.keras import KerasRunner
from toolkit.runners.litert import LiteRTRunner
from toolkit.runners.onnxruntime import OnnxRuntimeRunner
from toolkit.runners.savedmodel import SavedModelRunner

RUNNERS: dict[str, type[Runner]] = {
    "keras": KerasRunner,
    "tensorflow": SavedModelRunner,
    "litert": LiteRTRunner,
    "onnxruntime": OnnxRuntimeRunner,
}


def runners_for(path: str | PurePath, is_dir: bool = False) -> list[type[Runner]]:
    """Every registered runner that opens this file type, in registry order ("/" = a folder)."""
    suffix = "/" if is_dir or not PurePath(path).suffix else PurePath(path).suffix.lower()
    return [runner for runner in RUNNERS.values() if suffix in runner.suffixes]


__all__ = ["RUNNERS", "Runner", "runners_for"]
