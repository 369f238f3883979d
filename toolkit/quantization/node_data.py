"""Per-layer int8 error as a Model Explorer node-data file, so the graph view colours each
operator by how much its quantization hurt.

Built with the package's own API (`model_explorer.node_data_builder`), which is an optional
extra (`pip install 'toolkit[explorer]'`): its graph adapter alone is a large native library.
Open it with `model-explorer model_int8.tflite --node_data_paths=<this file>`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from toolkit.quantization.records import ROUNDING_NOISE, LayerErrors

NODE_DATA_SUFFIX = ".node_data.json"
MISSING = "model-explorer is not installed (pip install 'toolkit[explorer]')"
# Colours by error in quantization steps (RMSE / scale): rounding alone, up to one step, more.
THRESHOLDS = ((1.25 * ROUNDING_NOISE, "#7cb342"), (1.0, "#fdd835"), (float("inf"), "#e53935"))


def explorer_installed() -> bool:
    """Found without importing it: the import starts a web server's dependencies."""
    return importlib.util.find_spec("model_explorer") is not None


def output_names(tflite_path: Path) -> tuple[str, list[str]]:
    """The main subgraph's name (Model Explorer's graph id) and every tensor an op writes."""
    from ai_edge_litert.tools.flatbuffer_utils import convert_bytearray_to_object

    model = convert_bytearray_to_object(bytearray(Path(tflite_path).read_bytes()))
    subgraph = model.subgraphs[0]
    names = [subgraph.tensors[i].name.decode() for op in subgraph.operators for i in op.outputs]
    return (subgraph.name or b"main").decode(), names


def file_tensor(name: str, names: list[str]) -> str | None:
    """The file's name for a debugger tensor: the same, or with the digit the quantizer adds."""
    if name in names:
        return name
    return next((n for n in names if n[len(name) :].isdigit() and n.startswith(name)), None)


def node_data(errors: LayerErrors, tflite_path: Path):
    """A ModelNodeData with each quantized activation's error (the plot's metric), keyed by the
    file's own output tensor names."""
    from model_explorer import node_data_builder as ndb

    graph, names = output_names(tflite_path)
    results = {}
    for tensor in errors.tensors:
        key = file_tensor(tensor.tensor, names)
        if key is not None and tensor.kind == "activation":
            results[key] = ndb.NodeDataResult(value=float(tensor.metrics[errors.plot_metric]))
    thresholds = [ndb.ThresholdItem(value=v, bgColor=c) for v, c in THRESHOLDS[:-1]]
    thresholds.append(ndb.ThresholdItem(value=1e30, bgColor=THRESHOLDS[-1][1]))
    data = ndb.GraphNodeData(
        results=results, name=f"int8 error ({errors.plot_metric})", thresholds=thresholds
    )
    return ndb.ModelNodeData(graphsData={graph: data})


def write_node_data(errors: LayerErrors, tflite_path: Path, target: Path) -> bool:
    """Writes the node data of `tflite_path` to `target`; False when the package is absent."""
    if not explorer_installed():
        return False
    node_data(errors, tflite_path).save_to_file(str(target))
    return True
