"""State values -> independent JSON copies: what isolates each tool from the run's history.

A tool gets its own copy of the state, and what it returns is copied before it is merged
(`updates`), so nothing a tool does to objects it holds can change a recorded step.  The
copy also checks that the state stays JSON (finite numbers, string keys), as the store
needs.
"""

from __future__ import annotations

import math
from typing import Any

from flowc.compiler.operators import article, strict_equal


class StateError(ValueError):
    """A value that is not JSON; `where` is the path to it, as in `issues[0].line`."""

    def __init__(self, problem: str, parts: list[str | int] | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.parts: list[str | int] = parts or []

    @property
    def where(self) -> str:
        """The path to the bad value."""
        out = ""
        for part in reversed(self.parts):
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out or "the value"


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, str, int, float, bool, None).

    Tuples become lists and subclasses become their base types.  Anything else, NaN and
    infinities, and non-string keys raise `StateError`.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                name = type(key).__name__
                raise StateError(f"a key is {article(name)} {name}, not a string: {key!r}")
            try:
                copied[key] = copy_json(item)
            except StateError as problem:
                problem.parts.append(key)
                raise
        return copied
    if kind is list or kind is tuple:
        items: list[Any] = []
        for index, item in enumerate(value):
            try:
                items.append(copy_json(item))
            except StateError as problem:
                problem.parts.append(index)
                raise
        return items
    if kind is float:
        if math.isfinite(value):
            return value
        raise StateError(f"{value} is not a JSON number")
    return _copy_subclass(value)


def _copy_subclass(value: Any) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return copy_json(float(value))
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return copy_json(dict(value))
    if isinstance(value, (list, tuple)):
        return copy_json(list(value))
    name = type(value).__name__
    raise StateError(f"{article(name)} {name} is not JSON")


class ReturnError(ValueError):
    """A tool's return value that is not updates to the state; the message says why."""


_SCALARS = (str, int, bool, float, type(None))


def updates(result: Any, state: dict[str, Any]) -> dict[str, Any]:
    """The delta a tool's return value makes: a dict of updates, or the whole state.

    Values are copied (so the tool keeps no handle on history) and checked to be JSON;
    keys whose value did not change are left out, which is what a whole-state return needs.
    `ReturnError` for anything else.
    """
    if type(result) is not dict:
        if not isinstance(result, dict):
            raise ReturnError(
                f"returned a {type(result).__name__}; a tool returns a dict of updates, "
                "the whole state, or None"
            )
        result = dict(result)
    delta: dict[str, Any] = {}
    for key, value in result.items():
        if type(key) is not str:
            raise ReturnError(f"returned a key that is not a string: {key!r}")
        kind = type(value)
        if kind not in _SCALARS or (kind is float and value - value != 0.0):  # NaN, infinity
            try:
                value = copy_json(value)
            except StateError as problem:
                problem.parts.append(key)
                raise ReturnError(
                    f"returned a value that is not JSON at `{problem.where}`: {problem.problem}"
                ) from None
        if key in state and _unchanged(state[key], value):
            continue
        delta[key] = value
    return delta


def _unchanged(old: Any, new: Any) -> bool:
    if old is new:
        return True
    kind = type(old)
    if kind is type(new) and kind in _SCALARS:
        return bool(old == new)
    return kind in (list, dict) and strict_equal(old, new)
