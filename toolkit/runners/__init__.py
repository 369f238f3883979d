"""Runtime registry: one runner per runtime; adding a runtime is one file plus one line here."""

from __future__ import annotations  # a device's Python may be 3.9 (the ssh agent imports this)

import importlib.util
from pathlib import PurePath

from toolkit.runners.base import Runner
from toolkit.runners.keras import KerasRunner
from toolkit.runners.litert import LiteRTRunner
from toolkit.runners.onnxruntime import OnnxRuntimeRunner
from toolkit.runners.openvino import OpenVINORunner
from toolkit.runners.savedmodel import SavedModelRunner
from toolkit.runners.tflite_micro import TFLiteMicroRunner

RUNNERS: dict[str, type[Runner]] = {
    "keras": KerasRunner,
    "tensorflow": SavedModelRunner,
    "litert": LiteRTRunner,
    "onnxruntime": OnnxRuntimeRunner,
    "tflite-micro": TFLiteMicroRunner,
    "openvino": OpenVINORunner,
}


def missing_runtime(runtime: str) -> str | None:
    """None when the runtime's package is installed, else the one line saying how to install it
    (found without importing it, so checking every runtime stays fast)."""
    runner = RUNNERS[runtime]
    top_level = runner.module.split(".")[0]
    if importlib.util.find_spec(top_level) is not None:
        return None
    return f"{runtime}: skipped, its package is not installed (pip install {runner.package})"


def runners_for(path: str | PurePath, is_dir: bool = False) -> list[type[Runner]]:
    """Every registered runner that opens this file type, in registry order ("/" = a folder)."""
    suffix = "/" if is_dir or not PurePath(path).suffix else PurePath(path).suffix.lower()
    return [runner for runner in RUNNERS.values() if suffix in runner.suffixes]


__all__ = ["RUNNERS", "Runner", "missing_runtime", "runners_for"]
