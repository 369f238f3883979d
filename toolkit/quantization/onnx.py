"""ONNX QDQ int8: per-tensor SQNR from ONNX Runtime's qdq_loss_debug, and QDQ models that keep
chosen Keras layers in float (`quantize_static(nodes_to_exclude=...)`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.arrays import as_float32, count, feeds, taken
from toolkit.formats.keras import INPUT_NAME
from toolkit.process import quiet_stderr
from toolkit.quantization.layers import assign_layers
from toolkit.quantization.qdq import quantize_qdq
from toolkit.quantization.records import DEBUG_SAMPLES, LayerErrors, TensorError, ranked

DEBUG_BATCH = 32


# A full-scale signal rounded to 8 bits: 6.02 dB per bit + 1.76 dB. No int8 tensor does better,
# so a node is charged only for what it loses below this (quantizing an input is not damage).
IDEAL_INT8_SQNR_DB = 6.02 * 8 + 1.76


class OnnxInt8Debugger:
    """Measures every QDQ tensor's error against the float graph, then builds QDQ models with
    any set of Keras layers kept in float.

    `prepared` is the float graph after `quant_pre_process`: ORT renames what it fuses there
    (`.../MatMul/MatMulAddFusion`), and `nodes_to_exclude` only knows those names.
    """

    def __init__(
        self,
        prepared: Path,
        calibration: np.ndarray,
        layer_names: Sequence[str],
        scratch: Path,
        debug_samples: int = DEBUG_SAMPLES,
    ):
        """`calibration` is shaped like the model input, normalized float32; `layer_names` is
        `keras_layer_names(model)`; intermediate graphs are written into `scratch`."""
        import onnx

        self.prepared = Path(prepared)
        self.calibration = as_float32(calibration)
        graph = onnx.load(str(self.prepared)).graph
        self._input_name = graph.input[0].name if graph.input else INPUT_NAME
        self._nodes = list(graph.node)
        self._layers = dict(
            zip(
                (n.name for n in self._nodes),
                assign_layers([n.name for n in self._nodes], layer_names),
                strict=True,
            )
        )
        full_int8 = Path(scratch) / "full_int8.onnx"
        self.write(full_int8)
        self.errors = self._layer_errors(full_int8, Path(scratch), debug_samples)

    def write(
        self, path: Path, float_layers: Sequence[str] = (), reduce_range: bool = False
    ) -> Path:
        """The QDQ model with every node of `float_layers` left in float (float I/O either way),
        its weights in 7 bits with `reduce_range`."""
        wanted = set(float_layers)
        nodes = [name for name, layer in self._layers.items() if layer in wanted]
        with quiet_stderr():
            quantize_qdq(self.prepared, path, self.calibration, nodes, reduce_range)
        return path

    def _activations(self, model: Path, augmented: Path, images: np.ndarray) -> dict:
        from onnxruntime.quantization import qdq_loss_debug

        qdq_loss_debug.modify_model_output_intermediate_tensors(str(model), str(augmented))
        batches = feeds(images, self._input_name, DEBUG_BATCH)
        with quiet_stderr():
            return qdq_loss_debug.collect_activations(str(augmented), batches)

    def _layer_errors(self, qdq: Path, scratch: Path, samples: int) -> LayerErrors:
        from onnxruntime.quantization import qdq_loss_debug as debug

        images = taken(self.calibration, slice(0, samples))
        float_acts = self._activations(self.prepared, scratch / "float_augmented.onnx", images)
        qdq_acts = self._activations(qdq, scratch / "qdq_augmented.onnx", images)
        # Cross-model error only: inside the QDQ graph, a tensor whose Relu was folded into its
        # quantizer compares pre-Relu with post-Relu values and looks catastrophic when it is not.
        activation_sqnr = {
            name: errors["xmodel_err"]
            for name, errors in debug.compute_activation_error(
                debug.create_activation_matching(qdq_acts, float_acts)
            ).items()
            if "xmodel_err" in errors
        }
        weight_sqnr = debug.compute_weight_error(
            debug.create_weight_matching(str(self.prepared), str(qdq))
        )
        return LayerErrors(
            format="onnx",
            method="onnxruntime.quantization.qdq_loss_debug (cross-model SQNR)",
            rank_metric="sqnr_loss_db",
            plot_metric="sqnr_db",
            samples=count(images),
            tensors=ranked(self._records(activation_sqnr, weight_sqnr), "sqnr_loss_db"),
        )

    def _records(self, activation_sqnr: dict, weight_sqnr: dict) -> list[TensorError]:
        """Graph order, each tensor with `sqnr_loss_db`: the dB its node loses from the lower of
        its worst input's SQNR and ideal 8-bit rounding. The cross-model SQNR accumulates along
        the graph; the loss is one node's share, so the layer that did the damage ranks first."""
        producer = {out: node for node in self._nodes for out in node.output}

        @functools.cache  # branches meet again: each tensor is walked back once
        def sqnr_of(tensor: str) -> float:
            if tensor in activation_sqnr:
                return activation_sqnr[tensor]
            node = producer.get(tensor)
            if node is None:  # a graph input or a float initializer: exact
                return math.inf
            return min((sqnr_of(i) for i in node.input if i), default=math.inf)

        records = []
        for node in self._nodes:
            layer = self._layers[node.name]
            for weight in (i for i in node.input if i in weight_sqnr):
                sqnr = weight_sqnr[weight]
                metrics = {"sqnr_db": sqnr, "sqnr_loss_db": IDEAL_INT8_SQNR_DB - sqnr}
                records.append(
                    TensorError(layer, weight, "weight", node.op_type, node.name, metrics)
                )
            for output in (o for o in node.output if o in activation_sqnr):
                sqnr = activation_sqnr[output]
                before = min((sqnr_of(i) for i in node.input if i), default=math.inf)
                metrics = {"sqnr_db": sqnr, "sqnr_loss_db": min(before, IDEAL_INT8_SQNR_DB) - sqnr}
                if math.isfinite(before):  # an exact float input has no SQNR to show
                    metrics["input_sqnr_db"] = before
                records.append(
                    TensorError(layer, output, "activation", node.op_type, node.name, metrics)
                )
        return records
