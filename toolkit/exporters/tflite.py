"""TFLite flatbuffers for LiteRT: float32, float16 weights, dynamic-range int8, full int8."""

import contextlib
from functools import partial
from pathlib import Path

from toolkit.arrays import one_at_a_time
from toolkit.exporters.base import ExportVariant, MixedPrecision, Tolerance
from toolkit.exporters.conversion import calibration_file, convert
from toolkit.exporters.savedmodel import shared_savedmodel


def tflite_savedmodel(context) -> Path:
    """The SavedModel every TFLite file is converted from: its serving signature has the
    export's batch (fixed at 1 unless `--batch dynamic`), so the file's shapes are static."""
    return shared_savedmodel(context, context.batch)


def tflite_bytes(context, variant: str) -> bytes:
    """The TFLite flatbuffer of `variant` (float32, float16, dynamic_int8, int8), converted
    once however many formats (the .tflite file, a C array) need it."""
    return context.shared(f"tflite:{variant}", lambda: convert_tflite(context, variant))


def convert_tflite(context, variant: str) -> bytes:
    """One conversion from the export's shared SavedModel, in the export's converter process
    (`exporters.conversion`): a converter that crashes ends this variant only. The export's
    later TFLite files are sent ahead, converted there while this one is validated."""
    order = [v.variant for v in VARIANTS]
    later = [v for v in order[order.index(variant) + 1 :] if f"model_{v}.tflite" in context.planned]
    return convert(context, *_request(context, variant), then=[_request(context, v) for v in later])


def _request(context, variant: str) -> tuple:
    calibration = calibration_file(context) if variant == "int8" else ""
    return ("tflite", str(tflite_savedmodel(context)), variant, calibration)


def tflite_from_savedmodel(savedmodel: Path, variant: str, calibration, shared) -> bytes:
    """The converter's flatbuffer of `variant`; `calibration` (model inputs) for int8 only,
    `shared(key, build)` keeps the loaded SavedModel for the next conversion.

    From a SavedModel, not from_concrete_functions: on a Keras 3 model the latter gives a file
    that runs but outputs NaN (variables not frozen), seen with TF 2.21; frozen first, it loses
    the serving signature (input and output names) the runners read.
    """
    import tensorflow as tf

    with savedmodel_loaded_once(savedmodel, shared):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel))
        return _configured(converter, calibration, variant).convert()


def _configured(converter, calibration, variant: str):
    import tensorflow as tf

    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        converter.representative_dataset = one_at_a_time(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


@contextlib.contextmanager
def savedmodel_loaded_once(savedmodel: Path, shared):
    """Within it, TF's converter gets the SavedModel at `savedmodel` loaded once for all
    conversions, kept by `shared(key, build)` (the export's, or the converter process's).

    A conversion loads the SavedModel twice (for its signatures, then for debug info) and the
    int8 debugger's converter twice more: ten loads per export, each as slow as the model is
    large (TF 2.21). The object is only read by the converter.
    `tensorflow.lite.python.lite._load` is TF's private name: where it is missing, conversions
    load as before.
    """
    from tensorflow.lite.python import lite

    original = getattr(lite, "_load", None)
    if original is None:
        yield
        return
    path = str(savedmodel)

    def load(export_dir, tags=None, options=None):
        if str(export_dir) != path or options is not None:
            return original(export_dir, tags, options)
        return shared(f"loaded:{path}", lambda: original(export_dir, tags))

    lite._load = load
    try:
        yield
    finally:
        lite._load = original


def export_tflite(model, path, context, variant="float32"):
    path.write_bytes(tflite_bytes(context, variant))


def int8_debugger(context):
    """LiteRT's QuantizationDebugger on the export's SavedModel and calibration, built once."""
    from toolkit.quantization.layers import keras_layer_names
    from toolkit.quantization.tflite import TFLiteInt8Debugger

    def build():
        with savedmodel_loaded_once(tflite_savedmodel(context), context.shared):
            return TFLiteInt8Debugger(
                tflite_savedmodel(context), context.calibration, keras_layer_names(context.model)
            )

    return context.shared("debugger:tflite", build)


def write_mixed(debugger, float_layers, path) -> None:
    path.write_bytes(debugger.quantized_model(float_layers))


MIXED = MixedPrecision(int8_debugger, write_mixed, "model_mixed_int8.tflite")


# XNNPACK sums in another order than TF's Eigen kernels: float32 differs by ~1e-6 at most.
FLOAT32 = Tolerance(max_abs_diff=1e-4)
# Weights rounded to float16 (11-bit mantissa) move probabilities by ~1e-3.
FLOAT16 = Tolerance(max_abs_diff=1e-2)
# 8-bit weights (and activations) change scores by a few percent; what matters is the class,
# or for other outputs a signal-to-error ratio of 20 dB (error power 1% of signal power).
INT8 = Tolerance(min_agreement=0.97, min_snr_db=20.0)

VARIANTS = tuple(
    ExportVariant(
        "tflite",
        variant,
        f"model_{variant}.tflite",
        "litert",
        tolerance,
        partial(export_tflite, variant=variant),
        mixed,
    )
    for variant, tolerance, mixed in (
        ("float32", FLOAT32, None),
        ("float16", FLOAT16, None),
        ("dynamic_int8", INT8, None),
        ("int8", INT8, MIXED),
    )
)
