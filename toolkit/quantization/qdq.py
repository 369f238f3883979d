"""ONNX Runtime's static int8 QDQ quantization, one definition for every ONNX int8 build."""

from __future__ import annotations

from pathlib import Path

from toolkit.arrays import feeds
from toolkit.formats.keras import INPUT_NAME


def first_input_name(path: Path) -> str:
    """The graph's first input name, which a one-input model's calibration array is fed as
    (`images`, or the Keras name of a model with several outputs)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return graph.input[0].name if graph.input else INPUT_NAME


class CalibrationReader:
    """Feeds the calibration sample to ONNX Runtime's quantizer in batches of 32, by input name
    (one array is the `images` input)."""

    def __init__(self, input_name: str, images, batch: int = 32):
        self._batches = iter(feeds(images, input_name, batch))

    def get_next(self):
        return next(self._batches, None)


def quantize_qdq(
    prepared_path: Path, path: Path, calibration, nodes_to_exclude=(), reduce_range=False
) -> None:
    """Static int8 QDQ of a pre-processed float graph; `nodes_to_exclude` stay in float, and
    `reduce_range` quantizes weights to 7 bits (for CPUs without VNNI).

    One definition for the int8 export and the mixed-precision builds, so they differ only
    in the excluded nodes. `calibration` is shaped like the model input.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared_path),
        str(path),
        CalibrationReader(first_input_name(prepared_path), calibration),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=list(nodes_to_exclude),
        reduce_range=reduce_range,
    )
