"""Format registry: one module per format; adding a format is one file plus one line here."""

from toolkit.exporters import ethos_u, keras, onnx, savedmodel, tflite, tflite_micro
from toolkit.exporters.base import ExportContext, ExportVariant, Tolerance

EXPORTERS: dict[str, tuple[ExportVariant, ...]] = {
    "keras": keras.VARIANTS,
    "savedmodel": savedmodel.VARIANTS,
    "tflite": tflite.VARIANTS,
    "onnx": onnx.VARIANTS,
    "tflite-micro": tflite_micro.VARIANTS,
    "ethos-u": ethos_u.VARIANTS,
}

__all__ = ["EXPORTERS", "ExportContext", "ExportVariant", "Tolerance"]
