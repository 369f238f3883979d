"""TFLite flatbuffers for LiteRT: float32, float16 weights, dynamic-range int8, full int8."""

import tempfile
from functools import partial

from toolkit.exporters.base import ExportVariant, Tolerance
from toolkit.exporters.savedmodel import export_savedmodel


def export_tflite(model, path, context, variant="float32"):
    # Converted from a SavedModel: from_concrete_functions on a Keras 3 model gives a file
    # that runs but outputs NaN (variables not frozen), seen with TF 2.21.
    import tensorflow as tf

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        export_savedmodel(model, tmp, context)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        path.write_bytes(_configure(converter, context, model, variant).convert())


def _configure(converter, context, model, variant):
    import tensorflow as tf

    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        calibration = context.calibration.reshape((-1, 1, *model.inputs[0].shape[1:]))
        converter.representative_dataset = lambda: ([x] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


# XNNPACK sums in another order than TF's Eigen kernels: float32 differs by ~1e-6 at most.
FLOAT32 = Tolerance(max_abs_diff=1e-4)
# Weights rounded to float16 (11-bit mantissa) move probabilities by ~1e-3.
FLOAT16 = Tolerance(max_abs_diff=1e-2)
# 8-bit weights (and activations) change scores by a few percent; what matters is the class.
INT8 = Tolerance(min_agreement=0.97)

VARIANTS = (
    ExportVariant(
        "tflite",
        "float32",
        "model_float32.tflite",
        "litert",
        FLOAT32,
        partial(export_tflite, variant="float32"),
    ),
    ExportVariant(
        "tflite",
        "float16",
        "model_float16.tflite",
        "litert",
        FLOAT16,
        partial(export_tflite, variant="float16"),
    ),
    ExportVariant(
        "tflite",
        "dynamic_int8",
        "model_dynamic_int8.tflite",
        "litert",
        INT8,
        partial(export_tflite, variant="dynamic_int8"),
    ),
    ExportVariant(
        "tflite",
        "int8",
        "model_int8.tflite",
        "litert",
        INT8,
        partial(export_tflite, variant="int8"),
    ),
)
