"""Type checks of JSON read from disk against the dataclass it becomes, before anything uses it.

A manifest or report from someone else may hold a number where a name belongs, a list where a
table belongs: refused once at load, it never reaches code that assumes the types.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields


def matches(value: object, hint: object) -> bool:
    """Whether a JSON value fits a type annotation (unions, list/dict/tuple of, None, numbers)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(matches(value, h) for h in typing.get_args(hint))
    if hint is type(None) or hint is None:
        return value is None
    if hint is typing.Any or hint is object:
        return True
    origin, args = typing.get_origin(hint) or hint, typing.get_args(hint)
    if origin in (int, float) and isinstance(value, bool):
        return False
    if origin is float:
        return isinstance(value, int | float)
    if origin is tuple:  # JSON has lists only
        return isinstance(value, list | tuple) and all(matches(v, args[0]) for v in value)
    if not isinstance(value, origin):
        return False
    if origin is list and args:
        return all(matches(v, args[0]) for v in value)
    if origin is dict and args:
        return all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
    return True


def check_fields(data: object, cls: type, skip: tuple[str, ...] = (), strict: bool = True) -> None:
    """Raises ValueError naming the first field of `data` that `cls` would not accept: missing,
    of the wrong type, or (when `strict`) unknown. Fields in `skip` are checked by the caller."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an object, found {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    if strict and (unknown := sorted(set(data) - set(known))):
        raise ValueError(f"unknown field {unknown[0]!r}")
    for name, spec in known.items():
        if name in skip:
            continue
        if name not in data:
            if spec.default is MISSING and spec.default_factory is MISSING:
                raise ValueError(f"missing field {name!r}")
            continue
        if not matches(data[name], hints[name]):
            raise ValueError(f"field {name!r} is not {_describe(hints[name])}")


def _describe(hint: object) -> str:
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return text.replace("typing.", "").replace("NoneType", "None")
