"""The mixed-precision search: keep the most damaging layers in float, one at a time, until
the int8 model meets its tolerance again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

Built = TypeVar("Built")  # what a build returns: a path, flatbuffer bytes


@dataclass(frozen=True)
class SearchResult(Generic[Built]):
    """What the search tried and where it stopped."""

    float_layers: tuple[str, ...]  # kept in float in `mixed` (all tried layers when it failed)
    full_int8: dict  # the validator's figures for full int8
    mixed: dict | None  # the figures of the last model built, None when full int8 passed
    passed: bool  # whether the returned model meets the tolerance
    model: Built  # the last model built: full int8 when it passed, else the mixed one
    builds: int  # models built and validated, full int8 included


def search_float_layers(
    ranked_layers: Sequence[str],
    build: Callable[[tuple[str, ...]], Built],
    validate: Callable[[Built], tuple[dict, bool]],
) -> SearchResult[Built]:
    """Adds layers to float in the order of `ranked_layers` (most damaging first) until
    `validate` says the tolerance holds.

    `build(float_layers)` makes a model (full int8 for no layer); `validate(model)` returns the
    comparator's figures and whether the tolerance holds. When it still fails with every
    layer in float, the result says `passed=False` and carries the last figures.
    """
    float_layers: tuple[str, ...] = ()
    model = build(float_layers)
    full_int8, passed = validate(model)
    figures, builds = None, 1
    for layer in ranked_layers:
        if passed:
            break
        float_layers = (*float_layers, layer)
        model = build(float_layers)
        figures, passed = validate(model)
        builds += 1
    return SearchResult(float_layers, full_int8, figures, passed, model, builds)
