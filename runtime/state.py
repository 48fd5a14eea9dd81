"""State values -> independent, bounded JSON copies: what isolates each tool from history.

A tool gets its own copy of the state, and what it returns is copied before it is merged
(`updates`), so nothing a tool does to objects it holds can change a recorded step.  The
copy also checks that the state stays JSON (finite numbers, string keys) and storable
(no NUL character, no lone surrogate, integers within signed 64 bits), as the store needs,
and within the run's `Limits`: a `StateMeter` measures each delta while it is copied and
keeps the state's size up to date key by key, so a step costs the size of its delta, never
of the whole state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowc.compiler.operators import article, strict_equal
from flowc.compiler.program import MAX_MAX_STEPS
from flowc.compiler.tools import KeyContract
from flowc.compiler.types import FlowType
from flowc.compiler.types import problems_with as type_problems
from flowc.dsl.limits import MAX_CONDITION_INT, MIN_CONDITION_INT
from flowc.runtime.contracts import broken_write

#: The integers the store keeps exactly: PostgreSQL JSONB and SQLite JSON both hold signed
#: 64-bit integers (a larger one is rounded by SQLite and cannot be written as JSON by
#: Python past 4,300 digits), so a state holds nothing outside this range; conditions
#: compute in the same range (one definition, in `dsl/limits.py`).
MIN_INT = MIN_CONDITION_INT
MAX_INT = MAX_CONDITION_INT
#: Deepest nesting of lists and objects in a state value (requests accept 220 levels).
MAX_DEPTH = 256

#: Default limits; the server's settings (`FLOWC_*`) override them.
DEFAULT_MAX_INPUT_BYTES = 2 * 1024 * 1024
DEFAULT_MAX_STATE_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_STRING_LENGTH = 2 * 1024 * 1024
DEFAULT_SLICE_STEPS = 100
DEFAULT_SLICE_MS = 1.0

#: What a number, `true`, `false` or `null` counts in a size estimate, in bytes.
SCALAR_SIZE = 8


@dataclass(frozen=True, slots=True)
class Limits:
    """How far a run may go: state and value sizes, steps, and how long it holds the loop.

    Sizes are the state's JSON text (compact, not ASCII-escaped), estimated as it is
    copied: strings and keys exactly (their UTF-8 bytes and quotes, escapes not counted),
    brackets, commas and colons exactly, and a number, `true`, `false` or `null` as
    `SCALAR_SIZE` bytes.  `max_input_bytes` bounds a
    new run's initial state, `max_state_bytes` the state at every step, `max_string_length`
    (in characters) every string and key.  A flow whose `max_steps` is over
    `max_steps_limit` is refused.  A run yields to the event loop after `slice_steps` steps
    or `slice_ms` milliseconds, whichever comes first.  `prefix`, when set, names the
    settings in messages (`FLOWC_` gives `FLOWC_MAX_STATE_BYTES`).
    """

    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_state_bytes: int = DEFAULT_MAX_STATE_BYTES
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH
    max_steps_limit: int = MAX_MAX_STEPS
    slice_steps: int = DEFAULT_SLICE_STEPS
    slice_ms: float = DEFAULT_SLICE_MS
    prefix: str | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_input_bytes", "max_state_bytes", "max_string_length", "max_steps_limit",
            "slice_steps",
        ):  # fmt: skip
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{name} must be a whole number, 1 or more, not {value!r}")
        if not isinstance(self.slice_ms, (int, float)) or not 0 < self.slice_ms < math.inf:
            raise ValueError(f"Limits.slice_ms must be a positive number, not {self.slice_ms!r}")

    def named(self, field: str) -> str:
        """`FIELD = value` as the setting is spelled where these limits come from."""
        name = f"{self.prefix}{field.upper()}" if self.prefix is not None else field
        return f"{name} = {getattr(self, field):,}"

    def input_problem(self, state: Any) -> LimitError | StateError | None:
        """Why `state` cannot start a run (its first problem), or None; nothing is kept."""
        try:
            StateMeter(self).load(state, "the input", "max_input_bytes")
        except (LimitError, StateError) as problem:
            return problem
        return None


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
            if isinstance(part, str):
                part = _clipped(part)
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out or "the value"


#: The most characters of a key that a message shows.
SHOWN_KEY = 40


def _clipped(key: str) -> str:
    """A key as messages show it: its first `SHOWN_KEY` characters, then `…`."""
    return key if len(key) <= SHOWN_KEY else f"{key[:SHOWN_KEY]}…"


class LimitError(StateError):
    """A value past a limit: `problem` says which limit and by how much, `where` the path.

    `whole` is true when the limit is on the whole input or state, not on one value.
    """

    def __init__(self, problem: str, *, whole: bool = False) -> None:
        super().__init__(problem)
        self.whole = whole


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
                raise StateError(_not_a_string_key(key))
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
    return _base_value(value)


def _base_value(value: Any) -> Any:
    """A subclass of a JSON type as its base type (containers copied); `StateError` else."""
    base = _shallow_base(value)
    return copy_json(base) if isinstance(base, (float, dict, list)) else base


def _shallow_base(value: Any) -> Any:
    """A subclass of a JSON type as its base type, its items left as they are."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    name = type(value).__name__
    raise StateError(f"{article(name)} {name} is not JSON")


def _not_a_string_key(key: Any) -> str:
    name = type(key).__name__
    shown = repr(key)
    shown = shown if len(shown) <= SHOWN_KEY else f"{shown[:SHOWN_KEY]}…"
    return f"a key is {article(name)} {name}, not a string: {shown}"


class StateMeter:
    """A run's state size, per top-level key and in all, kept up to date delta by delta.

    `measure` copies a value, checks it (storable JSON within the limits) and returns its
    estimated size; `admit` takes a delta's sizes into the total, or refuses the delta when
    the state would grow past `max_state_bytes`.
    """

    __slots__ = ("key_sizes", "keys", "limits", "total")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.key_sizes: dict[str, int] = {}  # keys checked already, with their colon
        self.keys: dict[str, int] = {}  # each key's entry: its size and its comma
        self.total = 1  # `{}`, less the comma the first entry does not have

    def load(self, state: Any, what: str, bound: str = "max_state_bytes") -> dict[str, Any]:
        """A copy of a whole state, measured from scratch, within the limit named `bound`.

        `what` names the state in errors (`the input`, `the state`).
        """
        if type(state) is not dict:
            if not isinstance(state, dict):
                raise StateError(f"{what} must be a JSON object")
            state = dict(state)
        copied: dict[str, Any] = {}
        sizes: dict[str, int] = {}
        for key, value in state.items():
            if type(key) is not str:
                raise StateError(_not_a_string_key(key))
            copied[key], sizes[key] = self.measure(key, value)
        total = 1 + len(sizes) + sum(sizes.values())
        if total > getattr(self.limits, bound):
            raise LimitError(
                f"{what} is about {total:,} bytes as JSON, more than "
                f"{self.limits.named(bound)}{_largest(sizes)}",
                whole=True,
            )
        self.keys = {}
        self.total = 1
        self.admit(sizes, what)
        return copied

    def measure(self, key: str, value: Any) -> tuple[Any, int]:
        """`value` for the top-level `key`, copied and checked, and its size with the key's."""
        size = self.key_sizes.get(key)
        if size is None:
            size = self.key_sizes[key] = self.text_size(key, "a key") + 1
        try:
            kind = type(value)
            if kind is str:
                return value, size + self.text_size(value)
            if kind is int:
                if not MIN_INT <= value <= MAX_INT:
                    raise LimitError(_too_big(value))
                return value, size + SCALAR_SIZE
            if kind is bool or value is None:
                return value, size + SCALAR_SIZE
            copier = _Copier(self)
            copied = copier.copy(value, 1)
            return copied, size + copier.size
        except StateError as problem:
            problem.parts.append(key)
            raise

    def admit(self, sizes: dict[str, int], what: str) -> None:
        """Take the new sizes of some keys into the total; `LimitError` past the limit."""
        keys = self.keys
        total = self.total
        for key, size in sizes.items():
            total += size + 1 - keys.get(key, 0)  # each entry with its comma
        if total > self.limits.max_state_bytes:
            raise LimitError(
                f"{what} would make the state about {total:,} bytes as JSON, more than "
                f"{self.limits.named('max_state_bytes')}{_largest(sizes)}",
                whole=True,
            )
        for key, size in sizes.items():
            keys[key] = size + 1
        self.total = total

    def text_size(self, text: str, what: str = "a string") -> int:
        """A string's size as JSON: `LimitError` when too long, `StateError` if unstorable.

        `what` names it in errors: `a string`, `a key`.
        """
        length = len(text)
        if length > self.limits.max_string_length:
            raise LimitError(
                f"{what} of {length:,} characters is longer than "
                f"{self.limits.named('max_string_length')}"
            )
        if text.isascii():  # O(1): CPython knows
            if "\x00" in text:
                raise StateError(f"{what} holds `\\u0000`, which PostgreSQL cannot store")
            return length + 2
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise StateError(
                f"{what} holds a lone surrogate {text[exc.start]!r}, which is not Unicode"
            ) from None
        if "\x00" in text:
            raise StateError(f"{what} holds `\\u0000`, which PostgreSQL cannot store")
        return size + 2


class _Copier:
    """One value's checked copy, its size added up as it goes."""

    __slots__ = ("meter", "size")

    def __init__(self, meter: StateMeter) -> None:
        self.meter = meter
        self.size = 0

    def copy(self, value: Any, depth: int) -> Any:
        kind = type(value)
        if kind is str:
            self.size += self.meter.text_size(value)
            return value
        if kind is int:
            if not MIN_INT <= value <= MAX_INT:
                raise LimitError(_too_big(value))
            self.size += SCALAR_SIZE
            return value
        if kind is bool or value is None:
            self.size += SCALAR_SIZE
            return value
        if kind is float:
            if not math.isfinite(value):
                raise StateError(f"{value} is not a JSON number")
            self.size += SCALAR_SIZE
            return value
        if kind is dict or kind is list or kind is tuple:
            if depth > MAX_DEPTH:
                raise LimitError(f"lists and objects are nested more than {MAX_DEPTH} deep")
            self.size += len(value) + 1 if value else 2  # brackets and commas
            if kind is dict:
                return self._object(value, depth)
            return self._list(value, depth)
        return self.copy(_shallow_base(value), depth)

    def _object(self, value: dict[Any, Any], depth: int) -> dict[str, Any]:
        copied: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise StateError(_not_a_string_key(key))
            self.size += self.meter.text_size(key, "a key") + 1
            try:
                copied[key] = self.copy(item, depth + 1)
            except StateError as problem:
                problem.parts.append(key)
                raise
        return copied

    def _list(self, value: list[Any] | tuple[Any, ...], depth: int) -> list[Any]:
        items: list[Any] = []
        for index, item in enumerate(value):
            try:
                items.append(self.copy(item, depth + 1))
            except StateError as problem:
                problem.parts.append(index)
                raise
        return items


def _too_big(value: int) -> str:
    # `str(value)` refuses integers past 4,300 digits: describe it by its bits instead.
    return (
        f"an integer of {value.bit_length():,} bits is outside the signed 64-bit range "
        f"({MIN_INT:,} to {MAX_INT:,}) that the store keeps exactly"
    )


def _largest(sizes: dict[str, int]) -> str:
    if not sizes:
        return ""
    key = max(sizes, key=sizes.__getitem__)
    return f"; `{_clipped(key)}` is about {sizes[key]:,} of them"


class ReturnError(ValueError):
    """A tool's return value that is not updates to the state; the message says why."""


class ReturnLimitError(ReturnError):
    """A tool's return value past a limit (a run error `limit`, not `bad_return`)."""


def returned_entry(meter: StateMeter, key: Any, value: Any) -> tuple[Any, int]:
    """One entry a tool returned, copied and measured: the value and its size as JSON.

    `ReturnError` for a key that is not a string or a value that is not JSON,
    `ReturnLimitError` for a value past the meter's limits.
    """
    if type(key) is not str:
        raise ReturnError(f"returned a key that is not a string: {key!r}")
    try:
        return meter.measure(key, value)
    except LimitError as problem:
        at = f" at `{problem.where}`" if problem.parts else ""
        raise ReturnLimitError(f"returned a value past a limit{at}: {problem.problem}") from None
    except StateError as problem:
        at = f" at `{problem.where}`" if problem.parts else ""
        raise ReturnError(f"returned a value that is not JSON{at}: {problem.problem}") from None


def updates(
    result: Any,
    state: dict[str, Any],
    meter: StateMeter,
    writes: tuple[KeyContract, ...] | None = None,
    declared: Mapping[str, FlowType] | None = None,
) -> dict[str, Any]:
    """The delta a tool's return value makes: a dict of updates, or the whole state.

    Values are copied (so the tool keeps no handle on history), checked to be storable JSON
    within the meter's limits, and measured; keys whose value did not change are left out,
    which is what a whole-state return needs.  The meter takes the delta's sizes.
    `ReturnError` for anything else, `ReturnLimitError` past a limit; also `ReturnError`
    when the tool declares what it `writes` (its return annotation) and breaks that, or
    when it changes a key the flow `declared` (`state KEY: TYPE`) to a value of another type.
    """
    if type(result) is not dict:
        if not isinstance(result, dict):
            raise ReturnError(
                f"returned a {type(result).__name__}; a tool returns a dict of updates, "
                "the whole state, or None"
            )
        result = dict(result)
    delta: dict[str, Any] = {}
    sizes: dict[str, int] = {}
    key_sizes = meter.key_sizes
    longest = meter.limits.max_string_length
    for key, value in result.items():
        # The common case inline: a key seen before, and a small int, a bool, null or a short
        # ASCII string.  Anything else takes `measure`, which says what is wrong.
        size = key_sizes.get(key) if type(key) is str else None
        kind = type(value)
        if size is None:
            pass
        elif (kind is int and MIN_INT <= value <= MAX_INT) or kind is bool or value is None:
            size += SCALAR_SIZE
            if key in state and state[key] == value and type(state[key]) is kind:
                continue
            delta[key] = value
            sizes[key] = size
            continue
        elif kind is str and len(value) <= longest and value.isascii() and "\x00" not in value:
            size += len(value) + 2
            if key in state and state[key] == value and type(state[key]) is kind:
                continue
            delta[key] = value
            sizes[key] = size
            continue
        value, size = returned_entry(meter, key, value)
        if key in state and unchanged(state[key], value):
            continue
        delta[key] = value
        sizes[key] = size
    if writes is not None:  # before the meter takes the sizes of a delta that is refused
        broken = broken_write(writes, result, delta, state)
        if broken is not None:
            raise ReturnError(broken)
    if declared:
        for key in delta:
            if key not in declared:
                continue
            found = type_problems(declared[key], delta[key], limit=1)
            if found:
                path, message = found[0]
                at = f" (at `{key}{path}`)" if path else ""
                raise ReturnError(
                    f"returned a `{key}` that does not fit the flow's declaration "
                    f"`state {key}: {declared[key]}`{at}: {message}"
                )
    if sizes:
        try:
            meter.admit(sizes, "they")
        except LimitError as problem:
            raise ReturnLimitError(f"returned updates past a limit: {problem.problem}") from None
    return delta


def unchanged(old: Any, new: Any) -> bool:
    """True when `new` is the same JSON value as `old` (`1` and `1.0`, `true` and `1` differ)."""
    if old is new:
        return True
    kind = type(old)
    if kind is type(new) and kind in (str, int, bool, float, type(None)):
        return bool(old == new)
    return kind in (list, dict) and strict_equal(old, new)
