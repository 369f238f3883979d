"""TFLite full int8: per-tensor error from LiteRT's QuantizationDebugger, and int8 models that
keep chosen Keras layers in float (the debugger's denylisted_nodes).

Not Google's litert-quantizer (tried, 0.11.0): it keeps layers in float too (a `no_quantize`
recipe entry per name regex), but its int8 is another quantizer than the converter's that
writes model_int8.tflite (0.86 vs 0.92 agreement on the same outlier model), so the debugger's
per-tensor figures would not describe it; and it pins ai-edge-litert==2.3.0 exactly and
brings scipy and litert-lm-builder. The debugger needs nothing new, builds each candidate from
one calibration quickly, and names in its figures the very tensors the denylist takes.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.arrays import as_float32, count, one_at_a_time, taken
from toolkit.process import quiet_stderr
from toolkit.quantization.layers import assign_layers
from toolkit.quantization.records import DEBUG_SAMPLES, LayerErrors, TensorError, ranked

NUMERIC_VERIFY_PREFIX = "NumericVerify/"


def _samples(images):
    """A representative dataset factory: one item per call, batch of 1."""
    return one_at_a_time(images)


def _input_order(interpreter) -> list[str]:
    """The interpreter's inputs by signature name, in its own order: the debugger feeds a list,
    and a converter orders several inputs as it likes."""
    signature = next(iter(interpreter._get_full_signature_list().values()), {})
    names = {index: name for name, index in signature.get("inputs", {}).items()}
    return [names.get(d["index"], d["name"]) for d in interpreter.get_input_details()]


def _debug_samples(images, debugger_of):
    """The debugger's dataset factory: one item per call, inputs by name put in the order of
    the debugger's model (`debugger_of()` once it exists)."""
    if not isinstance(images, dict):
        return one_at_a_time(images)

    def generate():
        order = _input_order(debugger_of()._quant_interpreter)
        for i in range(count(images)):
            yield [images[name][i : i + 1] for name in order]

    return generate


def _tensor_names(model_content: bytes) -> set[str]:
    from ai_edge_litert.interpreter import Interpreter

    return {t["name"] for t in Interpreter(model_content=model_content).get_tensor_details()}


class TFLiteInt8Debugger:
    """Calibrates once from a SavedModel, measures every quantized tensor's error, then builds
    int8 models with any set of Keras layers kept in float from the same calibration.

    The converter keeps float32 inference types and the debug options ask for int8 I/O
    (`fully_quantize`): with int8 inference types on the converter the debugger refuses to
    instrument the model (TF 2.21).
    """

    def __init__(
        self,
        savedmodel: Path,
        calibration: np.ndarray,
        layer_names: Sequence[str],
        debug_samples: int = DEBUG_SAMPLES,
    ):
        """`calibration` is shaped like the model input, (N, *input shape), normalized float32;
        `layer_names` is `keras_layer_names(model)`; the error is measured on the first
        `debug_samples` calibration images."""
        import tensorflow as tf

        calibration = as_float32(calibration)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _samples(calibration)
        debug_images = taken(calibration, slice(0, debug_samples))
        with quiet_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tf.lite.Interpreter's own deprecation notice
            self._debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter,
                debug_dataset=_debug_samples(debug_images, lambda: self._debugger),
                debug_options=tf.lite.experimental.QuantizationDebugOptions(fully_quantize=True),
            )
            self._debugger.run()
            self.errors = self._layer_errors(layer_names, count(debug_images))

    def _layer_errors(self, layer_names: Sequence[str], samples: int) -> LayerErrors:
        dump = io.StringIO()
        self._debugger.layer_statistics_dump(dump)
        rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
        float_names = _tensor_names(self._debugger.calibrated_model)
        names = [
            self._float_tensor_name(key, float_names) for key in self._debugger.layer_statistics
        ]
        tensors = []
        for name, layer, row in zip(names, assign_layers(names, layer_names), rows, strict=True):
            rmse = float(np.sqrt(float(row["mean_squared_error"])))
            scale = float(row["scale"])
            tensors.append(
                TensorError(
                    layer=layer,
                    tensor=name,
                    kind="activation",
                    op=row["op_name"],
                    node=name,
                    metrics={
                        "rmse": rmse,
                        "scale": scale,
                        "rmse_over_scale": rmse / scale,  # a quantized tensor's scale is > 0
                        "max_abs_error": float(row["max_abs_error"]),
                    },
                )
            )
        return LayerErrors(
            format="tflite",
            method="tf.lite.experimental.QuantizationDebugger",
            rank_metric="rmse_over_scale",
            plot_metric="rmse_over_scale",
            samples=samples,
            tensors=ranked(tensors, "rmse_over_scale"),
        )

    @staticmethod
    def _float_tensor_name(key: str, float_names: set[str]) -> str:
        """The float model's name for a NumericVerify key `NumericVerify/<name>[1]:<index>`.

        The quantizer appends a digit to most quantized tensors' names but not to all (the
        signature's output keeps `StatefulPartitionedCall:0`), so the float model decides.
        """
        name = key.removeprefix(NUMERIC_VERIFY_PREFIX).rsplit(":", 1)[0]
        return name if name in float_names or name[:-1] not in float_names else name[:-1]

    def quantized_model(self, float_layers: Sequence[str] = ()) -> bytes:
        """The int8 flatbuffer with `float_layers` kept in float.

        With no float layer it is full integer, int8 input and output. With any, the model is
        not integer-only (an integer accelerator cannot run it), so it keeps float32 input and
        output like every other non-integer variant: no scale or zero point for the user.
        """
        import tensorflow as tf

        wanted = set(float_layers)
        nodes = [t.node for t in self.errors.tensors if t.layer in wanted]
        with quiet_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._debugger.options = tf.lite.experimental.QuantizationDebugOptions(
                denylisted_nodes=nodes or None, fully_quantize=not nodes
            )
            return self._debugger.get_nondebug_quantized_model()
