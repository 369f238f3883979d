"""Data for models with several inputs or outputs: an `.npz` with one array per name, and the
check that a dataset holds what a model's names ask for.

Layout: `x_test/<input name>` (and `x_train/<input name>`) per input, or `x_test` for a model
with one input; `y_test/<output name>` (and `y_train/...`) per classification output;
`class_names/<output name>` per classification output.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from toolkit.arrays import packed
from toolkit.data.checks import check_items, check_labels, data_error
from toolkit.data.dataset import Dataset

PREFIXES = ("x_test", "x_train", "y_test", "y_train", "class_names")


def _grouped(arrays: dict, path: Path) -> dict[str, dict[str, np.ndarray]]:
    """The arrays by prefix, then by name ("x_test" alone is named "")."""
    groups: dict[str, dict[str, np.ndarray]] = {prefix: {} for prefix in PREFIXES}
    for key, array in arrays.items():
        prefix, _, name = key.partition("/")
        if prefix not in groups or (_ and not name):
            raise data_error(
                path,
                f"array {key!r}: expected x_test/<input>, y_test/<output> or "
                "class_names/<output> (README, Data)",
            )
        groups[prefix][name] = array
    for prefix, named in groups.items():
        if "" in named and len(named) > 1:
            raise data_error(path, f"both {prefix} and {prefix}/<name> arrays: use one layout")
    return groups


def _items(named: dict, path: Path, prefix: str):
    """One split's inputs: the plain array, or one field per input name (equal item counts)."""
    checked = {
        name: check_items(a, path, f"{prefix}/{name}" if name else prefix)
        for name, a in named.items()
    }
    if "" in checked:
        return checked[""]
    counts = {name: len(a) for name, a in checked.items()}
    first = next(iter(counts))
    for name, n in counts.items():
        if n != counts[first]:
            raise data_error(
                path, f"{prefix}/{name} has {n} items but {prefix}/{first} has {counts[first]}"
            )
    return packed(checked)


def _class_names(named: dict, path: Path) -> dict[str, tuple[str, ...]]:
    from toolkit.data.npz import _class_names as one

    return {name: one({"class_names": array}, path) for name, array in named.items()}


def _labels(named: dict, count: int, path: Path, prefix: str, class_names: dict) -> dict:
    labels = {}
    for name, array in named.items():
        if array.ndim == 2 and array.shape[1] == 1:  # (N, 1), as keras.datasets stores
            array = array.reshape(-1)
        key = f"{prefix}/{name}" if name else prefix
        labels[name] = check_labels(array, count, path, key, class_names.get(name))
    return labels


def read_named_npz(arrays: dict, path: Path) -> Dataset:
    """An .npz with arrays by input and output name (README, Data)."""
    groups = _grouped(arrays, path)
    if not groups["x_test"]:
        raise data_error(path, "no x_test or x_test/<input> array")
    class_names = _class_names(groups["class_names"], path)
    x_test = _items(groups["x_test"], path, "x_test")
    y_test = _labels(groups["y_test"], len(x_test), path, "y_test", class_names)
    x_train = train_labels = None
    if groups["x_train"]:
        for name in set(groups["x_train"]) ^ set(groups["x_test"]):
            splits = ("x_train", "x_test")
            have, lack = splits if name in groups["x_train"] else splits[::-1]
            one = f"{have}/{name}" if name else have
            other = f"{lack}/{name}" if name else lack
            raise data_error(path, f"{one} has no {other} beside it (one array per input)")
        x_train = _items(groups["x_train"], path, "x_train")
        train_labels = _labels(groups["y_train"], len(x_train), path, "y_train", class_names)
    return Dataset(
        x_train,
        None,
        x_test,
        None,
        path,
        class_names=None,
        kind="npz",
        output_labels=y_test,
        train_output_labels=train_labels,
        output_class_names=class_names,
    )


def matched_to_model(dataset: Dataset, input_names: list[str], output_names: list[str]) -> Dataset:
    """`dataset` as the model reads it, refused (exit 3) naming the array that does not fit:
    an input with no array, an array for no input, labels or class names for no output. A
    one-input, one-output model gets plain items and labels; others items by input name."""
    path, items = dataset.source, dataset.test_images
    fields = list(items.dtype.names or ())
    if not fields and len(input_names) > 1:
        raise data_error(
            path,
            f"x_test: the model has {len(input_names)} inputs ({', '.join(input_names)}); "
            "write one x_test/<input name> array per input (README, Data)",
        )
    if len(fields) > 1 and len(input_names) == 1:
        raise data_error(path, f"x_test/{fields[1]}: the model has one input, not {len(fields)}")
    if len(input_names) > 1:
        for name in fields:
            if name not in input_names:
                raise data_error(path, f"x_test/{name}: the model has no input named {name!r}")
        for name in input_names:
            if name not in fields:
                raise data_error(path, f"no x_test/{name} array for the model's input {name!r}")
    if len(output_names) > 1 and "" in (dataset.output_labels or {}):
        raise data_error(
            path,
            f"y_test: the model has {len(output_names)} outputs; write one "
            "y_test/<output name> array per classification output (README, Data)",
        )
    for group, what in (
        (dataset.output_labels, "y_test"),
        (dataset.output_class_names, "class_names"),
    ):
        for name in group or {}:
            if name and name not in output_names:
                raise data_error(
                    path,
                    f"{what}/{name}: the model has no output named {name!r} "
                    f"(outputs: {', '.join(output_names)})",
                )
    if len(fields) == 1 and len(input_names) == 1:
        field = fields[0]
        train = dataset.train_images[field] if dataset.train_images is not None else None
        dataset = replace(dataset, test_images=items[field], train_images=train)
    elif fields:
        order = list(input_names)
        dataset = replace(
            dataset,
            test_images=_reordered(items, order),
            train_images=None
            if dataset.train_images is None
            else _reordered(dataset.train_images, order),
        )
    if len(output_names) == 1 and dataset.output_labels is not None:
        dataset = _single_output(dataset)
    return dataset


def _reordered(items: np.ndarray, order: list[str]) -> np.ndarray:
    return packed({name: items[name] for name in order})


def _single_output(dataset: Dataset) -> Dataset:
    """A one-output model's labels and class names where the plain layout keeps them."""
    labels = next(iter(dataset.output_labels.values()), None)
    train = next(iter((dataset.train_output_labels or {}).values()), None)
    names = next(iter((dataset.output_class_names or {}).values()), None)
    return replace(
        dataset,
        test_labels=labels,
        train_labels=train,
        class_names=names,
        output_labels=None,
        train_output_labels=None,
        output_class_names=None,
    )


def fit_inputs(inputs, shapes: dict[str, tuple], source: Path):
    """Model inputs shaped as the model's (toolkit.data.checks.fit_to_model, input by input)."""
    from toolkit.data.checks import fit_to_model

    if not isinstance(inputs, dict):
        (shape,) = shapes.values()
        return fit_to_model(inputs, shape, source)
    return {name: _fit_named(inputs[name], shape, source, name) for name, shape in shapes.items()}


def _fit_named(array: np.ndarray, shape: tuple, source: Path, name: str) -> np.ndarray:
    from toolkit.data.checks import fit_to_model
    from toolkit.errors import ToolkitError

    try:
        return fit_to_model(array, shape, source)
    except ToolkitError as exc:
        raise data_error(source, f"x_test/{name}: {str(exc).split(': ', 1)[-1]}") from None


def manifest_data(dataset: Dataset, manifest) -> Dataset:
    """`dataset` matched to the inputs and outputs an export recorded (none recorded: as is)."""
    if not manifest.inputs or not manifest.outputs:
        return dataset
    outputs = [entry["name"] for entry in manifest.outputs]
    return matched_to_model(dataset, [entry["name"] for entry in manifest.inputs], outputs)
