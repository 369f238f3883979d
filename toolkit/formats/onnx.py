"""Facts about ONNX files: where their tensors read external data from."""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError


def _tensors(graph):
    """Every TensorProto of a graph: initializers, sparse ones, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    yield from _node_tensors(graph.node)


def _node_tensors(nodes):
    for node in nodes:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def check_external_data(path: Path) -> None:
    """Refuses ONNX files whose external tensor data points outside the artifact's folder.

    Every tensor counts, not only initializers: a Constant node's value is read the same way.
    """
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model_proto = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as exc:
        raise ToolkitError(
            f"{path}: not a valid ONNX model ({type(exc).__name__})", ExitCode.ARTIFACT
        ) from None
    folder = path.parent.resolve()
    functions = (t for f in model_proto.functions for t in _node_tensors(f.node))
    for tensor in (*_tensors(model_proto.graph), *functions):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder):
            raise ToolkitError(
                f"{path}: tensor {tensor.name} reads external data from {location!r}, outside "
                f"{folder}; refusing to load it",
                ExitCode.ARTIFACT,
            )
