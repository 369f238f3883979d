"""Per-layer int8 error as a Model Explorer node-data file, so the graph view colours each
operator by how much its quantization hurt.

Built with the package's own API (`model_explorer.node_data_builder`), which is an optional
extra (`pip install 'toolkit[explorer]'`): its graph adapter alone is a large native library.
Open it with `model-explorer model_int8.tflite --node_data_paths=<this file>`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from toolkit.quantization.records import ROUNDING_NOISE, LayerErrors

NODE_DATA_SUFFIX = ".node_data.json"
MISSING = "model-explorer is not installed (pip install 'toolkit[explorer]')"
CHILD_SECONDS = 300
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


def node_data(errors: LayerErrors, tflite_path: Path, graph_names=None):
    """A ModelNodeData with each quantized activation's error (the plot's metric), keyed by the
    file's own output tensor names (`graph_names`: `output_names` of the file, read before)."""
    from model_explorer import node_data_builder as ndb

    graph, names = graph_names or output_names(tflite_path)
    results = {}
    for tensor in errors.tensors:
        key = file_tensor(tensor.tensor, names)
        value = tensor.metrics.get(errors.plot_metric)  # None where the record had a NaN
        if key is not None and tensor.kind == "activation" and value is not None:
            results[key] = ndb.NodeDataResult(value=float(value))
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


class NodeDataJobs:
    """Node data written by child processes while the export goes on: importing the package
    costs more than all the rest of writing the file. `finish` waits for them (before the
    commit) and turns the record of any that failed into the reason."""

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[subprocess.Popen, Path, str]] = {}
        self._records: dict[str, dict] = {}

    def start(self, record: Path, tflite_path: Path, target: Path, metric: str) -> None:
        """Writes `target` from the per-layer `record` (JSON) of `tflite_path` in a child. The
        file's tensor names are read here: export may remove the file before the child runs."""
        if not explorer_installed():
            return
        import json

        graph_names = json.dumps(output_names(tflite_path))
        source_root = str(Path(__file__).resolve().parents[2])  # the folder holding toolkit/
        paths = [source_root, *filter(None, [os.environ.get("PYTHONPATH")])]
        command = [sys.executable, "-m", __name__, str(record), str(tflite_path), str(target)]
        process = subprocess.Popen(
            [*command, metric],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
        self._jobs[target.name] = process, target, graph_names

    def describe(self, relative: str, record: dict) -> None:
        """Adds to an artifact's quantization `record` where its node data is, or why none."""
        name = Path(relative).name
        if name in self._jobs:
            record["node_data"] = relative  # model-explorer FILE --node_data_paths=<this>
            self._records[name] = record
        else:
            record["node_data_skipped"] = MISSING

    def finish(self) -> list[str]:
        """Waits for every child; one line per file that could not be written."""
        problems = []
        for name, (process, target, graph_names) in self._jobs.items():
            try:
                _, stderr = process.communicate(graph_names, timeout=CHILD_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                _, stderr = process.communicate()
            if process.returncode == 0 and target.is_file():
                continue
            lines = [line for line in (stderr or "").splitlines() if line.strip()]
            reason = f"not written: {lines[-1].strip() if lines else process.returncode}"
            problems.append(f"{name}: {reason}")
            record = self._records.get(name)
            if record is not None:
                record.pop("node_data", None)
                record["node_data_skipped"] = reason
        self._jobs.clear()
        return problems


def main(argv: list[str]) -> None:
    """The child: RECORD TFLITE TARGET METRIC (a per-layer record as export writes it), the
    file's `output_names` as JSON on stdin."""
    import json

    from model_explorer import node_data_builder  # noqa: F401 - the slow part, before stdin

    from toolkit.quantization.records import TensorError

    record, tflite_path, target, metric = argv
    data = json.loads(Path(record).read_text())
    tensors = tuple(TensorError(**tensor) for tensor in data["tensors"])
    fields = ("format", "method", "rank_metric", "samples")
    errors = LayerErrors(**{key: data[key] for key in fields}, plot_metric=metric, tensors=tensors)
    graph, names = json.loads(sys.stdin.read())
    node_data(errors, Path(tflite_path), (graph, names)).save_to_file(target)


if __name__ == "__main__":
    main(sys.argv[1:])
