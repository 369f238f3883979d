"""Maps tensor and node names in converted graphs back to the Keras layers that produced them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence


def keras_layer_names(model) -> list[str]:
    """The model's own name, then its layers' names in call order: what `traced_scopes` needs."""
    return [model.name, *(layer.name for layer in model.layers)]


def traced_scopes(names: Sequence[str]) -> dict[str, str]:
    """TF name scope -> Keras name, for a model traced into a SavedModel or tf2onnx graph.

    Keras 3 enters each name scope twice per trace and TF keeps the second, uniquified one:
    layer `dense` appears as `dense_1`, `dense_1` as `dense_1_2` (seen with TF 2.21, Keras 3.15,
    in both the SavedModel and the tf2onnx graph). Replaying that counting resolves names that a
    suffix match cannot (`dense_1` is layer `dense` there, not layer `dense_1`).
    """
    in_use: Counter[str] = Counter()

    def unique(name: str) -> str:
        seen = in_use[name]
        in_use[name] += 1
        if not seen:
            return name
        in_use[f"{name}_{seen}"] += 1
        return f"{name}_{seen}"

    for name in names:
        unique(name)
    return {unique(name): name for name in names}


def layer_of(name: str, scopes: dict[str, str], model_name: str) -> str:
    """The Keras layer a tensor or node name belongs to ('' when no path component is a layer).

    Converters join fused ops' names with ';' (`m_1/dense_1/MatMul;m_1/dense_1/Relu`) and ORT's
    pre-processing appends to them (`m_1/dense_1/MatMul/MatMulAddFusion`); the first layer
    scope found, from the innermost path component out, names the layer.
    """
    for part in name.split(";"):
        for component in reversed(part.split("/")):
            layer = scopes.get(component)
            if layer is not None and layer != model_name:
                return layer
    return ""


def assign_layers(names: Sequence[str], layer_names: Sequence[str]) -> list[str]:
    """The Keras layer of each name, in graph order; a name with none (the signature's output
    tensor, a converter's own op) takes the layer before it, whose activation it computes."""
    scopes = traced_scopes(layer_names)
    layers, previous = [], ""
    for name in names:
        previous = layer_of(name, scopes, layer_names[0]) or previous
        layers.append(previous)
    return layers
