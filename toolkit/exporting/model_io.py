"""A model's inputs and outputs at export: their names and shapes, what kind each output is,
the data matched to them, and each output judged against the reference on its own kind."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolkit.arrays import Named, as_named, in_named_batches
from toolkit.data import Dataset
from toolkit.data.checks import data_error
from toolkit.data.named import fit_inputs, matched_to_model
from toolkit.metrics import CLASS_KINDS, Comparison, compare_named, top_classes, worst_of

CLASSIFIER, BINARY, VALUES = "classifier", "binary", "values"
REFERENCE_BATCH = 32  # Keras's own default: memory grows with it


@dataclass(frozen=True)
class ModelIO:
    """Inputs (name -> shape, batch aside) and outputs (name, shape, kind, class names) by the
    names every format uses (formats.keras.io_names), in the Keras order."""

    inputs: dict[str, tuple[int, ...]]
    outputs: list[dict]
    data_names: list[str]  # the Keras input names the data's x_test/<name> arrays use

    @property
    def input_names(self) -> list[str]:
        return list(self.inputs)

    @property
    def output_names(self) -> list[str]:
        return [head["name"] for head in self.outputs]

    @property
    def single(self) -> bool:
        """One input and one output: the layout, names and manifest keys of before."""
        return len(self.inputs) == 1 and len(self.outputs) == 1

    def classifiers(self) -> list[dict]:
        return [head for head in self.outputs if head["kind"] in CLASS_KINDS]

    @property
    def task(self) -> str:
        return "classification" if self.classifiers() else "other"


def _activation(model, name: str) -> str:
    """The activation that produces the output `name` ("" when unknown)."""
    try:
        layer = model.get_layer(name)
    except ValueError:
        return ""
    if type(layer).__name__ == "Softmax":
        return "softmax"
    return getattr(getattr(layer, "activation", None), "__name__", "")


def output_kind(shape: tuple, activation: str, labelled: bool) -> str:
    """A softmax or logits head with labels or class names is a classifier; a (N, 1) sigmoid
    head a binary classifier at 0.5; anything else (boxes, a regression) values."""
    if len(shape) == 1 and shape[0] == 1 and activation == "sigmoid":
        return BINARY
    if len(shape) == 1 and shape[0] >= 2 and (labelled or activation == "softmax"):
        return CLASSIFIER
    return VALUES


def describe_model(model, dataset: Dataset) -> ModelIO:
    """The model's inputs and outputs, each output's kind judged from its shape, activation
    and whether the data labels or names its classes."""
    from toolkit.formats.keras import io_names, keras_output_names

    in_names, out_names = io_names(model)
    single_output = len(out_names) == 1
    outputs = []
    keras_names = keras_output_names(model)
    for name, keras_name, tensor in zip(out_names, keras_names, model.outputs, strict=True):
        shape = tuple(tensor.shape[1:])
        if single_output:
            labelled = dataset.labelled or bool(dataset.class_names)
            names = dataset.class_names
        else:
            labelled = name in (dataset.output_labels or {}) or name in (
                dataset.output_class_names or {}
            )
            names = (dataset.output_class_names or {}).get(name)
        kind = output_kind(shape, _activation(model, keras_name), labelled)
        classes = 2 if kind == BINARY else (shape[0] if kind == CLASSIFIER else 0)
        if kind in CLASS_KINDS and names and len(names) != classes:
            where = "class_names" if single_output else f"class_names/{name}"
            raise data_error(
                dataset.source, f"{where}: {len(names)} class names for {classes} classes"
            )
        class_names = list(names or [str(i) for i in range(classes)])
        outputs.append(
            {
                "name": name,
                "shape": [None, *shape],
                "dtype": "float32",
                "kind": kind,
                "class_names": class_names,
            }
        )
    inputs = {name: tuple(t.shape[1:]) for name, t in zip(in_names, model.inputs, strict=True)}
    return ModelIO(inputs, outputs, [t.name for t in model.inputs])


def model_data(dataset: Dataset, model) -> Dataset:
    """The dataset matched to the model's input and output names (exit 3 when it does not)."""
    from toolkit.formats.keras import io_names

    _, out_names = io_names(model)
    return matched_to_model(dataset, [t.name for t in model.inputs], out_names)


def head_labels(dataset: Dataset, io: ModelIO, stop: int | None = None) -> dict[str, np.ndarray]:
    """Labels by output name (the first `stop`), each checked against its output's classes."""
    if io.single or len(io.outputs) == 1:
        labels = {} if dataset.test_labels is None else {io.outputs[0]["name"]: dataset.test_labels}
    else:
        labels = dict(dataset.output_labels or {})
    heads = {head["name"]: head for head in io.outputs}
    for name, values in labels.items():
        head = heads[name]
        classes = len(head["class_names"])
        where = "y_test" if len(io.outputs) == 1 else f"y_test/{name}"
        if head["kind"] not in CLASS_KINDS:
            labels[name] = None  # a regression's targets: judged against the reference only
        elif len(values) and int(values.max()) >= classes:
            raise data_error(
                dataset.source,
                f"{where}: labels go up to {int(values.max())} but output {name!r} has "
                f"{classes} classes",
            )
    return {k: v[:stop] for k, v in labels.items() if v is not None}


def model_inputs(dataset: Dataset, items, io: ModelIO):
    """Stored items as model inputs: one array, or arrays by input name; shapes checked."""
    inputs = dataset.inputs(items)
    if isinstance(inputs, dict):
        inputs = dict(zip(io.input_names, (inputs[n] for n in io.data_names), strict=True))
    return fit_inputs(inputs, io.inputs, dataset.source)


def reference_outputs(serving, inputs, io: ModelIO) -> Named:
    """The Keras model's outputs every artifact is judged against, by output name, through the
    serving function the SavedModel and tf2onnx reuse (one trace for all three)."""
    names = io.input_names

    def run(batch: Named) -> Named:
        result = serving(batch[names[0]]) if len(names) == 1 else serving(batch)
        return {name: result[name].numpy() for name in io.output_names}

    return in_named_batches(run, as_named(inputs, names), REFERENCE_BATCH)


def judge_outputs(outputs: Named, reference: Named, io: ModelIO, labels: dict) -> dict:
    """Each output's Comparison, by name; ValueError for a missing output or NaN."""
    return compare_named(outputs, reference, io.outputs, labels)


def reference_accuracies(reference: Named, labels: dict) -> dict[str, float]:
    return {
        name: float(np.mean(top_classes(reference[name].reshape(len(values), -1)) == values))
        for name, values in labels.items()
    }


def tolerance_failures(tolerance, judged: dict[str, Comparison], accuracies: dict) -> list[str]:
    """Every output held to the variant's tolerance; with several, each problem names its
    output."""
    problems = []
    for name, comparison in judged.items():
        missed = tolerance.failures(comparison, accuracies.get(name))
        problems += [f"{name}: {p}" if len(judged) > 1 else p for p in missed]
    return problems


def summary_figures(judged: dict[str, Comparison], io: ModelIO) -> dict:
    """The worst output's figures, plus every output's under `outputs` when there are several."""
    figures = {k: v for k, v in worst_of(judged).to_json().items() if v is not None}
    if len(judged) > 1:
        kinds = {head["name"]: head["kind"] for head in io.outputs}
        figures["outputs"] = {
            name: {"kind": kinds[name], **{k: v for k, v in c.to_json().items() if v is not None}}
            for name, c in judged.items()
        }
    return figures


def input_layout(shape: tuple) -> str:
    """How a person reads an input: an image (HWC/HW) or a feature vector/map."""
    if len(shape) == 3 and shape[2] in (1, 3, 4):
        return "HWC"
    return {1: "features", 2: "HW"}.get(len(shape), "tensor")


def manifest_inputs(dataset: Dataset, io: ModelIO) -> list[dict]:
    """Every input as the manifest lists it: name, shape, dtype, layout, preprocessing."""
    entries = []
    for name, data_name in zip(io.input_names, io.data_names, strict=True):
        shape = io.inputs[name]
        if dataset.test_images.dtype.names is not None:
            preprocessing = dataset.preprocess_for(data_name)
        else:
            preprocessing = dataset.preprocess
        entries.append(
            {
                "name": name,
                "shape": [None, *shape],
                "dtype": "float32",
                "layout": input_layout(shape),
                "preprocessing": preprocessing.to_json(),
            }
        )
    return entries
