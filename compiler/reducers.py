"""Reducers: how the values that parallel branches write to one state key become one.

`state issues: list[dict] = [] by extend` names the key's reducer.  Where branches join,
the state is the fork's, then each branch's writes in the order the branches are written:
a key without a reducer takes the value its one writer gave (two writers are a conflict,
E135 or the run error `merge_conflict`); a key with one folds each writing branch's value
into the value so far, from the fork's.  A branch therefore writes its contribution (the
items it found, the amount it adds), not the whole new value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flowc.compiler.types import FlowType, describe


class ReducerError(ValueError):
    """A value a reducer cannot fold (a `sum` of strings): the run fails with `merge_conflict`."""


def _append(current: Any, value: Any) -> Any:
    if not isinstance(current, list):
        raise ReducerError(f"`append` adds to a list, and the key holds {_kind(current)}")
    return [*current, value]


def _extend(current: Any, value: Any) -> Any:
    if not isinstance(current, list) or not isinstance(value, list):
        raise ReducerError(f"`extend` joins two lists, not {_kind(current)} and {_kind(value)}")
    return [*current, *value]


def _merge(current: Any, value: Any) -> Any:
    if not isinstance(current, dict) or not isinstance(value, dict):
        raise ReducerError(f"`merge` joins two objects, not {_kind(current)} and {_kind(value)}")
    return {**current, **value}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _sum(current: Any, value: Any) -> Any:
    if not _number(current) or not _number(value):
        raise ReducerError(f"`sum` adds two numbers, not {_kind(current)} and {_kind(value)}")
    return current + value


def _ordered(pick: Callable[[Any, Any], Any], name: str) -> Callable[[Any, Any], Any]:
    def reduce(current: Any, value: Any) -> Any:
        if current is None:
            return value
        if value is None:
            return current
        both_numbers = _number(current) and _number(value)
        both_strings = isinstance(current, str) and isinstance(value, str)
        if not (both_numbers or both_strings):
            raise ReducerError(
                f"`{name}` compares two numbers or two strings, "
                f"not {_kind(current)} and {_kind(value)}"
            )
        return pick(current, value)

    return reduce


def _replace(current: Any, value: Any) -> Any:
    return value


def _kind(value: Any) -> str:
    return describe(value)


@dataclass(frozen=True, slots=True)
class Reducer:
    """A reducer: the kinds of key it takes, and how it folds a branch's value in."""

    name: str
    kinds: frozenset[str]  # the declared types it takes (their kind); empty: any
    fold: Callable[[Any, Any], Any]
    meaning: str

    def problem(self, declared: FlowType) -> str | None:
        """What is wrong with this reducer on a key of type `declared`; None when it fits."""
        if not self.kinds or declared.kind in self.kinds or declared.is_any:
            return None
        kinds = " or ".join(sorted(self.kinds))
        return f"`{self.name}` {self.meaning}: it needs a key of type {kinds}, not {declared}"


#: Every reducer, by name.
REDUCERS: dict[str, Reducer] = {
    reducer.name: reducer
    for reducer in (
        Reducer("append", frozenset(["list"]), _append, "adds each branch's value to a list"),
        Reducer("extend", frozenset(["list"]), _extend, "adds each branch's list to a list"),
        Reducer("merge", frozenset(["dict"]), _merge, "merges each branch's object into one"),
        Reducer("sum", frozenset(["int", "float"]), _sum, "adds each branch's number"),
        Reducer("min", frozenset(["int", "float", "str"]), _ordered(min, "min"), "keeps the least"),
        Reducer(
            "max", frozenset(["int", "float", "str"]), _ordered(max, "max"), "keeps the greatest"
        ),
        Reducer("replace", frozenset(), _replace, "keeps the last branch's value"),
    )
}
