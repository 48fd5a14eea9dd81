"""A flow's state declarations -> its input schema (JSON Schema), input checks and defaults.

Declared keys without a default are required inputs; keys with one take a copy of it when
the input leaves them out; undeclared keys are allowed (the checks are gradual).  Works
from a checked `Program` or from an IR `Flow`, whose types are read from their text once.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from flowc.compiler.program import Program, StateField
from flowc.compiler.types import json_schema, normalized, parse_type, problems_with
from flowc.dsl.diagnostics import WHOLE_TEXT
from flowc.dsl.limits import MAX_SHOWN_DIAGNOSTICS

if TYPE_CHECKING:
    from flowc.compiler.ir import Flow

#: The JSON Schema dialect of an input schema.
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: The most problems reported for one input, and for one key of it.
MAX_INPUT_PROBLEMS = MAX_SHOWN_DIAGNOSTICS
MAX_KEY_PROBLEMS = 20

#: What is wrong with a key: not given though required, or a value of another type.
ProblemKind = Literal["missing", "wrong_type"]


@dataclass(frozen=True, slots=True)
class InputProblem:
    """One way an input does not fit the declarations, at one place in it.

    `path` is a JSON pointer from the input's root (`/issues/0/line`); `parts` the same
    place as keys and list indexes (`("issues", 0, "line")`).
    """

    key: str
    path: str
    parts: tuple[str | int, ...]
    message: str
    kind: ProblemKind

    def describe(self) -> str:
        """The problem in a line: `` `issues[0].line`: expected int, got a string ``."""
        where = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in self.parts[1:]
        )
        return f"`{self.key}{where}`: {self.message}"


class Inputs:
    """A flow's declared state keys, in the order written: its inputs and their defaults."""

    __slots__ = ("_schema", "fields", "title")

    def __init__(self, fields: Mapping[str, StateField], title: str | None = None) -> None:
        self.fields = dict(fields)
        self.title = title
        self._schema: dict[str, Any] | None = None

    @classmethod
    def of(cls, source: Program | Flow) -> Inputs:
        """The declarations of a checked Program or an IR Flow (the first of a key twice)."""
        if isinstance(source, Program):
            return cls(source.state, source.name)
        fields: dict[str, StateField] = {}
        for key in source.state:
            fields.setdefault(
                key.name,
                StateField(key.name, parse_type(key.type), key.default, key.required, WHOLE_TEXT),
            )
        return cls(fields, source.name)

    def schema(self) -> dict[str, Any]:
        """The input's JSON Schema (2020-12): worked out once, a fresh copy each time."""
        if self._schema is None:
            properties: dict[str, Any] = {}
            for name, declared in self.fields.items():
                schema = json_schema(declared.type)
                if not declared.required:
                    schema["default"] = declared.default
                properties[name] = schema
            found: dict[str, Any] = {"$schema": SCHEMA_DIALECT}
            if self.title is not None:
                found["title"] = self.title
            found |= {
                "type": "object",
                "properties": properties,
                "required": [n for n, declared in self.fields.items() if declared.required],
                "additionalProperties": True,
            }
            self._schema = found
        return copy.deepcopy(self._schema)

    def problems(self, state: Mapping[str, Any]) -> list[InputProblem]:
        """Where `state` does not fit the declarations, key by key in declaration order."""
        found: list[InputProblem] = []
        for name, declared in self.fields.items():
            if len(found) >= MAX_INPUT_PROBLEMS:
                break
            if name not in state:
                if declared.required:
                    message = f"a required input (`{name}: {declared.type}`) is missing"
                    found.append(InputProblem(name, _pointer(name), (name,), message, "missing"))
                continue
            value = normalized(declared.type, state[name])
            for where, message in problems_with(declared.type, value, limit=MAX_KEY_PROBLEMS):
                path = _pointer(name) + where
                found.append(
                    InputProblem(name, path, (name, *_parts(value, where)), message, "wrong_type")
                )
        return found[:MAX_INPUT_PROBLEMS]

    def with_defaults(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """`state` with a copy of its default for every declared key it leaves out.

        A whole float given for an `int` is made an `int` (`normalize`).
        """
        filled = self.normalize(state)
        for name, declared in self.fields.items():
            if name not in filled and not declared.required:
                filled[name] = copy.deepcopy(declared.default)
        return filled

    def normalize(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """`state` with each whole float given where a declared type wants an `int` an `int`.

        The input schema says `"type": "integer"`, which JSON Schema takes `3.0` for: so
        does flowc, and the run holds `3`.
        """
        found = dict(state)
        for name, declared in self.fields.items():
            if name in found:
                found[name] = normalized(declared.type, found[name])
        return found


def input_schema(source: Program | Flow | Inputs) -> dict[str, Any]:
    """The JSON Schema of a flow's input (`Inputs.schema`).

    A property per declared key (with its default, if it has one), `required` the keys
    without a default, undeclared keys allowed, `title` the flow's name.
    """
    return _inputs(source).schema()


def check_input(source: Program | Flow | Inputs, state: Mapping[str, Any]) -> list[InputProblem]:
    """Where an input does not fit a flow's declarations (empty when it does)."""
    return _inputs(source).problems(state)


def _inputs(source: Program | Flow | Inputs) -> Inputs:
    return source if isinstance(source, Inputs) else Inputs.of(source)


def _pointer(key: str) -> str:
    """A key as one JSON-pointer step, `/` included."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def _parts(value: Any, pointer: str) -> list[str | int]:
    """A JSON pointer into `value` as keys and list indexes (read against the value itself)."""
    parts: list[str | int] = []
    if not pointer:
        return parts
    for raw in pointer[1:].split("/"):
        step = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, list):
            index = int(step)
            parts.append(index)
            value = value[index]
        else:
            parts.append(step)
            value = value[step] if isinstance(value, dict) else None
    return parts
