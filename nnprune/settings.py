"""``key=value`` settings for typed dataclasses: the one parser behind ``--set`` (pruning config
fields), ``--task-option`` (task settings such as summarization's generation settings) and config
files.

Values are converted by the field's declared type, read with :func:`typing.get_type_hints`
(``Optional[X]`` / ``X | None`` accept ``none``/``null``; ``bool`` accepts true/false, yes/no,
on/off, 1/0; enums and other types are left to the dataclass's ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable
from typing import Any

from nnprune.errors import NNPruneError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def parse_assignments(items: Iterable[str], *, option: str) -> dict[str, str]:
    """``["a=1", "b-c=x"]`` -> ``{"a": "1", "b_c": "x"}``; a malformed item is a one-line error
    naming ``option``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise NNPruneError(f"{option} expects key=value, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``Optional[X]`` / ``X | None`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and origin is types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def field_types(cls: type) -> dict[str, Any]:
    """The declared (resolved) type of every field of dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce(cls: type, key: str, value: Any, *, what: str = "") -> Any:
    """``value`` converted to the declared type of field ``key`` of dataclass ``cls`` when it is a
    string; other values pass unchanged. Unknown keys are a one-line error listing the known
    ones."""
    kinds = field_types(cls)
    label = what or cls.__name__
    if key not in kinds:
        raise NNPruneError(f"unknown {label} key {key!r}; known: {', '.join(sorted(kinds))}")
    if not isinstance(value, str):
        return value
    tp, optional = _unwrap_optional(kinds[key])
    text = value.strip()
    if optional and text.lower() in ("none", "null", ""):
        return None
    try:
        if tp is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ValueError(text)
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
    except ValueError:
        name = getattr(tp, "__name__", str(tp))
        raise NNPruneError(f"{label} {key} expects a {name}, got {value!r}") from None
    return value  # str, enums, block specs...: parsed by the dataclass itself


def apply_assignments(obj: Any, values: dict[str, Any], *, what: str = "") -> Any:
    """A copy of dataclass instance ``obj`` with ``values`` (strings or typed) converted and
    applied; the copy's ``__post_init__`` validates them."""
    cls = type(obj)
    changes = {k: coerce(cls, k, v, what=what) for k, v in values.items()}
    return dataclasses.replace(obj, **changes)


__all__ = ["apply_assignments", "coerce", "field_types", "parse_assignments"]
