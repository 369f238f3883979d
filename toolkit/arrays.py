"""A model's several inputs or outputs as arrays by name, and the evaluation items that hold them.

Model inputs and outputs travel as `dict[name, array]` in the model's order. Stored items of a
model with several inputs are one numpy structured array, a field per input: slicing, `len`,
`np.save` and memory-mapping then work as for one plain array, and it travels as one `.npy`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np

Named = dict[str, np.ndarray]


def is_structured(items) -> bool:
    """Items of a model with several inputs (a field per input)."""
    return isinstance(items, np.ndarray) and items.dtype.names is not None


def as_named(values, names: Sequence[str], what: str = "input") -> Named:
    """`values` by name in the order of `names`: a dict, a structured array (a field per name)
    or, for one name, a plain array. ValueError names what is missing."""
    if isinstance(values, dict):
        missing = [n for n in names if n not in values]
        if missing:
            raise ValueError(f"no {what} named {missing[0]!r} (given {sorted(values)})")
        return {name: values[name] for name in names}
    if is_structured(values):
        return as_named({n: values[n] for n in values.dtype.names}, names, what)
    if len(names) != 1:
        raise ValueError(f"expected {len(names)} {what}s by name ({', '.join(names)})")
    return {names[0]: values}


def count(values) -> int:
    """Items in `values` (a dict of equal-length arrays, or one array)."""
    if isinstance(values, dict):
        return len(next(iter(values.values())))
    return len(values)


def sliced(values: Named, start: int, stop: int) -> Named:
    return {name: array[start:stop] for name, array in values.items()}


def taken(values, index) -> object:
    """Rows `index` of a dict of arrays, or of one array."""
    if isinstance(values, dict):
        return {name: array[index] for name, array in values.items()}
    return values[index]


def concatenated(parts: list[Named]) -> Named:
    """Batches of named arrays joined along the first axis, name by name."""
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def in_named_batches(
    predict_batch: Callable[[Named], Named], inputs: Named, batch_size: int = 256
) -> Named:
    """`predict_batch` over `inputs` in fixed-size chunks, each output stacked by name."""
    total = count(inputs)
    return concatenated(
        [predict_batch(sliced(inputs, i, i + batch_size)) for i in range(0, total, batch_size)]
    )


def packed(values: Named) -> np.ndarray:
    """Named arrays of equal length as one structured array (a field per name)."""
    dtype = np.dtype([(name, array.dtype, array.shape[1:]) for name, array in values.items()])
    items = np.empty(count(values), dtype=dtype)
    for name, array in values.items():
        items[name] = array
    return items


def as_float32(values):
    """One array or arrays by name, as float32."""
    if isinstance(values, dict):
        return {name: np.asarray(array, dtype=np.float32) for name, array in values.items()}
    return np.asarray(values, dtype=np.float32)


def one_at_a_time(values) -> Callable[[], object]:
    """A converter's representative (or debug) dataset: one item per sample, batch of 1; a list
    of one array for one input, a dict by signature input name for several."""
    if isinstance(values, dict):
        return lambda: (sliced(values, i, i + 1) for i in range(count(values)))
    return lambda: ([values[i : i + 1]] for i in range(len(values)))


def feeds(values, name: str, batch: int) -> list[Named]:
    """Batches by input name for a runtime fed by name (one array goes in as `name`)."""
    named = values if isinstance(values, dict) else {name: values}
    return [sliced(named, i, i + batch) for i in range(0, count(named), batch)]


def only(values: Named) -> np.ndarray:
    """The one array of a one-output model's outputs."""
    if len(values) != 1:
        raise ValueError(f"expected one output, found {', '.join(values)}")
    return next(iter(values.values()))


def zip_equal(*iterables) -> Iterator[tuple]:
    """`zip(..., strict=True)` for a device's Python 3.9 (the ssh agent imports the runners):
    ValueError when the iterables differ in length."""
    missing = object()
    for items in itertools.zip_longest(*iterables, fillvalue=missing):
        if any(item is missing for item in items):
            raise ValueError("zip_equal: the iterables differ in length")
        yield items
