"""The mixed-precision search: keep the most damaging layers in float, one at a time, until
the int8 model meets its tolerance again, then give back to int8 any layer it did not need."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from toolkit import interrupts

Built = TypeVar("Built")  # what a build returns: a path, flatbuffer bytes


@dataclass(frozen=True)
class SearchResult(Generic[Built]):
    """What the search tried and where it stopped."""

    float_layers: tuple[str, ...]  # kept in float in `model` (every layer when it failed)
    full_int8: dict  # the validator's figures for full int8
    mixed: dict | None  # the figures of `model`, None when full int8 passed
    passed: bool  # whether `model` meets the tolerance
    model: Built  # full int8 when it passed, else the mixed model (the last one when failing)
    builds: int  # models built and validated, full int8 included


def search_float_layers(
    ranked_layers: Sequence[str],
    build: Callable[[tuple[str, ...]], Built],
    validate: Callable[[Built], tuple[dict, bool]],
) -> SearchResult[Built]:
    """Adds layers to float in the order of `ranked_layers` (most damaging first) until
    `validate` says the tolerance holds, then returns to int8 each earlier pick the tolerance
    holds without.

    The second pass matters when the damage is in a tensor between two layers (a few huge
    activation channels): the layer reading it ranks first, keeping it alone in float does not
    help, and whatever ranked between it and the layer writing that tensor was kept for
    nothing. `build(float_layers)` makes a model (full int8 for none); `validate(model)` returns
    the comparator's figures and whether the tolerance holds.
    """
    model = build(())
    full_int8, passed = validate(model)
    builds, float_layers, figures = 1, (), None
    for layer in ranked_layers:
        if passed:
            break
        interrupts.check()  # each trial is a conversion: Ctrl-C or SIGTERM must not wait for all
        float_layers = (*float_layers, layer)
        model = build(float_layers)
        figures, passed = validate(model)
        builds += 1
    if passed:
        for layer in float_layers[-2::-1]:  # the last pick is what made it pass
            interrupts.check()
            fewer = tuple(name for name in float_layers if name != layer)
            candidate = build(fewer)
            candidate_figures, still_passes = validate(candidate)
            builds += 1
            if still_passes:
                float_layers, model, figures = fewer, candidate, candidate_figures
    return SearchResult(float_layers, full_int8, figures, passed, model, builds)
