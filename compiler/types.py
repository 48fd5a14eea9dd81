"""The types of state keys and tool parameters: a small gradual type system over JSON.

`str int float bool any list[T] dict[T]`, `T?` for nullable, and a set of allowed values
(from Python's `Literal[...]`).  `any` is the unknown type: it is compatible with every
other, which is what makes the checks gradual (a flow or tool without declarations is
checked as before).  Types are plain frozen values; the DSL writes them as `list[dict]?`,
the IR stores that same text, and `json_schema` gives the JSON Schema of a type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from flowc.compiler.operators import type_name
from flowc.dsl import ast
from flowc.dsl.diagnostics import Diagnostic, error
from flowc.dsl.limits import MAX_TYPE_DEPTH, MIN_CONDITION_INT

Kind = Literal["str", "int", "float", "bool", "any", "list", "dict", "null"]

#: The type names a flow can write, and the ones that take an item type in brackets.
SCALARS: tuple[Kind, ...] = ("str", "int", "float", "bool", "any")
CONTAINERS: tuple[Kind, ...] = ("list", "dict")
TYPE_NAMES: tuple[str, ...] = (*SCALARS, *CONTAINERS)


@dataclass(frozen=True, slots=True)
class FlowType:
    """A type: its kind, the type of its items (`list`, `dict`), and whether null is allowed.

    `choices`, when set, are the only values allowed (a Python `Literal[...]`).  `null` is
    the type of the literal `null` alone.
    """

    kind: Kind
    item: FlowType | None = None
    nullable: bool = False
    choices: tuple[ast.Value, ...] | None = None

    def __str__(self) -> str:
        """The type as the DSL writes it: `list[dict]?`."""
        if self.kind == "null":
            return "null"
        text: str = self.kind
        if self.item is not None:
            text += f"[{self.item}]"
        if self.choices is not None:
            text += " (one of " + ", ".join(_show(c) for c in self.choices) + ")"
        return text + ("?" if self.nullable and self.kind != "any" else "")

    @property
    def is_any(self) -> bool:
        """True for the unknown type, which every value and type is compatible with."""
        return self.kind == "any"

    @property
    def items(self) -> FlowType:
        """The type of a list's or dict's items (`any` when not given)."""
        return self.item if self.item is not None else ANY

    def or_null(self) -> FlowType:
        """The same type, also admitting null."""
        if self.nullable or self.kind in ("any", "null"):
            return self
        return FlowType(self.kind, self.item, True, self.choices)

    def not_null(self) -> FlowType:
        """The same type without null (what a value is once it is known not to be null)."""
        return FlowType(self.kind, self.item, False, self.choices) if self.nullable else self


ANY = FlowType("any")
NULL = FlowType("null")
STR = FlowType("str")
INT = FlowType("int")
FLOAT = FlowType("float")
BOOL = FlowType("bool")


def list_of(item: FlowType = ANY) -> FlowType:
    """`list[item]`."""
    return FlowType("list", None if item.is_any else item)


def dict_of(item: FlowType = ANY) -> FlowType:
    """`dict[item]`: a JSON object whose values are all of `item`."""
    return FlowType("dict", None if item.is_any else item)


def _show(value: ast.Value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------- from text and AST


class TypeSyntaxError(ValueError):
    """A type's text that is not a type; the message says why."""


def from_ref(ref: ast.TypeRef) -> tuple[FlowType | None, list[Diagnostic]]:
    """The type a `TypeRef` names, or None and an E-coded diagnostic at the bad part."""
    from flowc.compiler.suggestions import did_you_mean

    problems: list[Diagnostic] = []
    depth = 0

    def convert(node: ast.TypeRef) -> FlowType | None:
        nonlocal depth
        depth += 1
        name = node.name.text
        if depth > MAX_TYPE_DEPTH:
            problems.append(
                error("E120", f"a type nests more than {MAX_TYPE_DEPTH} deep", node.span)
            )
            return None
        if name not in TYPE_NAMES:
            hint = did_you_mean(name, TYPE_NAMES) or _python_hint(name)
            problems.append(
                error(
                    "E120",
                    f"unknown type `{name}`",
                    node.name.span,
                    help=hint or "types are " + ", ".join(f"`{n}`" for n in TYPE_NAMES),
                )
            )
            return None
        item: FlowType | None = None
        if node.item is not None:
            if name not in CONTAINERS:
                problems.append(
                    error(
                        "E120",
                        f"`{name}` takes no item type",
                        node.item.span,
                        help="only `list[T]` and `dict[T]` take one",
                    )
                )
                return None
            item = convert(node.item)
            if item is None:
                return None
        kind: Kind = name  # type: ignore[assignment]
        result = FlowType(kind, None if item is None or item.is_any else item)
        return result.or_null() if node.nullable else result

    found = convert(ref)
    return (found if not problems else None), problems


def _python_hint(name: str) -> str | None:
    aliases = {
        "string": "str", "integer": "int", "number": "float", "boolean": "bool",
        "List": "list", "Dict": "dict", "object": "dict", "array": "list", "Any": "any",
        "Optional": "a `?` after the type: `str?`", "None": "a `?` after the type: `str?`",
    }  # fmt: skip
    if name in aliases:
        target = aliases[name]
        return f"did you mean `{target}`?" if " " not in target else f"write {target}"
    return None


def parse_type(text: str) -> FlowType:
    """The type written as `text` (`list[dict]?`); raises `TypeSyntaxError` otherwise.

    What IR documents and tool contracts use; a flow's own types come from `from_ref`.
    """
    position = 0
    source = text.replace(" ", "")
    shown = _clip(text)

    def read(depth: int) -> FlowType:
        nonlocal position
        if depth > MAX_TYPE_DEPTH:
            raise TypeSyntaxError(f"a type nests more than {MAX_TYPE_DEPTH} deep")
        end = position
        while end < len(source) and (source[end].isalnum() or source[end] == "_"):
            end += 1
        name = source[position:end]
        if name not in TYPE_NAMES:
            raise TypeSyntaxError(f"unknown type `{_clip(name)}` in `{shown}`")
        position = end
        item: FlowType | None = None
        if position < len(source) and source[position] == "[":
            if name not in CONTAINERS:
                raise TypeSyntaxError(f"`{name}` takes no item type in `{shown}`")
            position += 1
            item = read(depth + 1)
            if position >= len(source) or source[position] != "]":
                raise TypeSyntaxError(f"a `]` is missing in `{shown}`")
            position += 1
        kind: Kind = name  # type: ignore[assignment]
        result = FlowType(kind, None if item is None or item.is_any else item)
        if position < len(source) and source[position] == "?":
            position += 1
            result = result.or_null()
        return result

    found = read(1)
    if position != len(source):
        raise TypeSyntaxError(f"unexpected `{_clip(source[position:])}` in `{shown}`")
    return found


def _clip(text: str, most: int = 40) -> str:
    """`text`, or its start and `…` when it is longer than `most` characters."""
    return text if len(text) <= most else text[: most - 1] + "…"


# ------------------------------------------------------------------- values and types


def type_of(value: ast.Value) -> FlowType:
    """The most precise type of a JSON value (the item type of a list or dict when uniform)."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    items = list(value.values()) if isinstance(value, dict) else value
    item = ANY
    if items:
        first = type_of(items[0])
        if all(type_of(other) == first for other in items[1:]):
            item = first
    return dict_of(item) if isinstance(value, dict) else list_of(item)


def problems_with(expected: FlowType, value: Any, *, limit: int = 20) -> list[tuple[str, str]]:
    """Where `value` does not have type `expected`: `(path, message)` pairs, at most `limit`.

    The path is JSON-pointer-like (`/issues/0/line`, `` for the value itself).  Iterative, so
    a deep value cannot exhaust the stack.
    """
    found: list[tuple[str, str]] = []
    stack: list[tuple[FlowType, Any, str]] = [(expected, value, "")]
    while stack and len(found) < limit:
        wanted, item, path = stack.pop()
        problem = _mismatch(wanted, item)
        if problem is not None:
            found.append((path, problem))
            continue
        if wanted.item is None or item is None:
            continue
        if isinstance(item, list):
            stack += [(wanted.item, v, f"{path}/{i}") for i, v in reversed(list(enumerate(item)))]
        elif isinstance(item, dict):
            stack += [
                (wanted.item, v, f"{path}/{_pointer(k)}") for k, v in reversed(list(item.items()))
            ]
    return found


#: The whole floats `normalized` makes ints: from -2**63 up to, not including, 2**63 (as a
#: float, the largest int rounds up to 2**63, which does not fit).
_SMALLEST, _ABOVE = float(MIN_CONDITION_INT), -float(MIN_CONDITION_INT)


def normalized(expected: FlowType, value: Any) -> Any:
    """`value` with every whole float where `expected` wants an `int` made an `int`.

    JSON has one number type: `3.0` is the integer 3 to JSON Schema (and to the input schema
    a flow publishes), but `3.0` to Python's `json`.  Anything else is left as it is, and a
    container is copied only when something in it changed.  The recursion follows the type,
    which nests at most `MAX_TYPE_DEPTH` deep.
    """
    kind = expected.kind
    if kind == "int":
        # Within the signed 64 bits every int of a run must fit (`1e300` stays a float, and
        # the check says it is no int).
        if type(value) is float and value.is_integer() and _SMALLEST <= value < _ABOVE:
            return int(value)
        return value
    item = expected.item
    if item is None or kind not in CONTAINERS:
        return value
    if kind == "list" and type(value) is list:
        items = [normalized(item, element) for element in value]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return items if changed else value
    if kind == "dict" and type(value) is dict:
        members = {key: normalized(item, member) for key, member in value.items()}
        changed = any(members[key] is not member for key, member in value.items())
        return members if changed else value
    return value


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _mismatch(wanted: FlowType, value: Any) -> str | None:
    """Why `value` is not of `wanted` at its top level, or None (items are not looked at)."""
    if wanted.is_any:
        return None
    if value is None:
        return None if wanted.nullable or wanted.kind == "null" else f"expected {wanted}, got null"
    if wanted.choices is not None and value not in wanted.choices:
        return f"expected one of {', '.join(_show(c) for c in wanted.choices)}, got {_show(value)}"
    kind = wanted.kind
    ok = (
        (kind == "str" and isinstance(value, str))
        or (kind == "bool" and isinstance(value, bool))
        or (kind == "int" and isinstance(value, int) and not isinstance(value, bool))
        or (
            kind == "float"
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
            and (not isinstance(value, float) or math.isfinite(value))
        )
        or (kind == "list" and isinstance(value, list))
        or (kind == "dict" and isinstance(value, dict))
    )
    if ok:
        return None
    return f"expected {wanted}, got {describe(value)}"


#: How a message names each of the conditions' type names (`operators.type_name`).
_DESCRIBED = {
    "null": "null", "int": "an integer", "float": "a number", "string": "a string",
    "list": "a list", "object": "an object",
}  # fmt: skip


def describe(value: Any) -> str:
    """A value's JSON kind, for messages: `a string`, `an integer`, `null`..."""
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    name = type_name(value)
    return _DESCRIBED.get(name, name)


def is_assignable(source: FlowType, target: FlowType) -> bool:
    """Whether every value of `source` is a value of `target` (`any` fits both ways).

    `int` fits `float`; `T` fits `T?`; `null` fits any `T?`; containers are covariant.
    """
    if source.is_any or target.is_any:
        return True
    if source.kind == "null":
        return target.nullable or target.kind == "null"
    if source.nullable and not target.nullable:
        return False
    if target.choices is not None:
        return source.choices is not None and set(map(_show, source.choices)) <= set(
            map(_show, target.choices)
        )
    if source.kind != target.kind:
        return source.kind == "int" and target.kind == "float"
    if source.kind in CONTAINERS:
        return is_assignable(source.items, target.items)
    return True


def join(left: FlowType, right: FlowType) -> FlowType:
    """The narrowest type that holds the values of both (where two paths meet)."""
    if left.is_any or right.is_any:
        return ANY
    if left.kind == "null":
        return right.or_null()
    if right.kind == "null":
        return left.or_null()
    nullable = left.nullable or right.nullable
    if left.kind == right.kind:
        item: FlowType | None = None
        if left.kind in CONTAINERS:
            item = join(left.items, right.items)
        choices = None
        if left.choices is not None and right.choices is not None:
            choices = (*left.choices, *(c for c in right.choices if c not in left.choices))
        joined = FlowType(left.kind, None if item is None or item.is_any else item, False, choices)
        return joined.or_null() if nullable else joined
    if {left.kind, right.kind} == {"int", "float"}:
        return FLOAT.or_null() if nullable else FLOAT
    return ANY


def json_schema(flow_type: FlowType) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12 vocabulary) of a type."""
    kind = flow_type.kind
    schema: dict[str, Any]
    if kind == "any":
        return {}
    if kind == "null":
        return {"type": "null"}
    names = {"str": "string", "int": "integer", "float": "number", "bool": "boolean",
             "list": "array", "dict": "object"}  # fmt: skip
    schema = {"type": names[kind]}
    if kind == "list" and flow_type.item is not None:
        schema["items"] = json_schema(flow_type.item)
    if kind == "dict" and flow_type.item is not None:
        schema["additionalProperties"] = json_schema(flow_type.item)
    if flow_type.choices is not None:
        schema["enum"] = list(flow_type.choices)
    if flow_type.nullable:
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"].append(None)
    return schema
