"""Runtime registry: one runner per runtime; adding a runtime is one file plus one line here."""

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
