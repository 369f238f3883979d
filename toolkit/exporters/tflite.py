"""TFLite flatbuffers for LiteRT: float32, float16 weights, dynamic-range int8, full int8."""

from functools import partial

from toolkit.exporters.base import ExportVariant, MixedPrecision, Tolerance
from toolkit.exporters.savedmodel import shared_savedmodel


def convert_tflite(context, variant: str) -> bytes:
    """One conversion from the export's shared SavedModel.

    From a SavedModel, not from_concrete_functions: on a Keras 3 model the latter gives a file
    that runs but outputs NaN (variables not frozen), seen with TF 2.21.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(shared_savedmodel(context)))
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "int8":
        calibration = context.calibration[:, None]  # one sample per representative batch
        converter.representative_dataset = lambda: ([x] for x in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def export_tflite(model, path, context, variant="float32"):
    path.write_bytes(context.tflite_bytes(variant))


def int8_debugger(context):
    """LiteRT's QuantizationDebugger on the export's SavedModel and calibration, built once."""
    from toolkit.quantization.layers import keras_layer_names
    from toolkit.quantization.tflite import TFLiteInt8Debugger

    return context.shared(
        "debugger:tflite",
        lambda: TFLiteInt8Debugger(
            shared_savedmodel(context), context.calibration, keras_layer_names(context.model)
        ),
    )


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
