"""Tool signatures as plain values: what the compiler checks node declarations against.

The runtime's registry builds a `ToolSpec` from each registered function; the compiler
never imports the runtime, it is handed the specs.
"""

from __future__ import annotations

import json
import math
from ast import literal_eval
from dataclasses import dataclass
from typing import Literal

from flowc.compiler.program import WAIT, Node, Program
from flowc.compiler.suggestions import closest, did_you_mean
from flowc.compiler.types import ANY, FlowType, describe, problems_with
from flowc.dsl import ast
from flowc.dsl.diagnostics import Diagnostic, error

ParamKind = Literal["positional_or_keyword", "keyword_only", "var_keyword"]


@dataclass(frozen=True, slots=True)
class ToolParam:
    """One static parameter of a tool (the state parameter is not listed)."""

    name: str
    kind: ParamKind = "keyword_only"
    required: bool = False
    default: str | None = None  # the default's repr, for display
    annotation: str | None = None
    #: The parameter's type from its annotation; None when it has none (unchecked).
    type: FlowType | None = None


@dataclass(frozen=True, slots=True)
class KeyContract:
    """A state key a tool reads or writes, with its type (`required`: always read/written)."""

    name: str
    type: FlowType = ANY
    required: bool = True


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool's name, its static parameters and its docstring, and where it comes from.

    `origin` is the function's `module.qualname`; `location` its `file:line`, when known.
    """

    name: str
    params: tuple[ToolParam, ...] = ()
    doc: str = ""
    state_param: str | None = "state"
    is_async: bool = False
    blocking: bool = False
    origin: str = ""
    location: str = ""
    #: What the tool reads from the state and writes to it, from `TypedDict` annotations of
    #: its state parameter and its return; None when not annotated (unchecked, `any`).
    reads: tuple[KeyContract, ...] | None = None
    writes: tuple[KeyContract, ...] | None = None

    @property
    def accepts_any_keyword(self) -> bool:
        """True when the tool takes `**kwargs`, so any argument name is accepted."""
        return any(p.kind == "var_keyword" for p in self.params)

    def param(self, name: str) -> ToolParam | None:
        """The named parameter, or None."""
        for p in self.params:
            if p.name == name and p.kind != "var_keyword":
                return p
        return None

    @property
    def summary(self) -> str:
        """The first line of the docstring."""
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


def check_tools(program: Program, tools: dict[str, ToolSpec]) -> list[Diagnostic]:
    """Every node's tool exists, its arguments are parameters of their types, none is missing."""
    problems: list[Diagnostic] = []
    for node in program.nodes.values():
        if node.wait is not None or node.tool == WAIT or node.flow is not None:
            continue  # `wait` is built in (E140 says what is wrong with it); a sub-flow is a flow
        spec = tools.get(node.tool)
        if spec is None:
            hint = did_you_mean(node.tool, tools)
            message = f"unknown tool `{node.tool}`"
            if not node.declared:
                message += " (a node without a `node` declaration runs the tool of its name)"
                hint = hint or f"declare it: `node {node.name} = TOOL`"
            problems.append(error("E201", message, node.tool_span, hint))
            continue
        for arg, span in node.arg_spans.items():
            if spec.param(arg) is None and not spec.accepts_any_keyword:
                names = [p.name for p in spec.params if p.kind != "var_keyword"]
                hint = did_you_mean(arg, names) or (
                    f"`{spec.name}` takes {_listing(names)}"
                    if names
                    else f"`{spec.name}` takes no arguments"
                )
                problems.append(
                    error("E202", f"tool `{spec.name}` has no parameter `{arg}`", span, hint)
                )
        problems += _argument_types(node, spec)
        missing = [p.name for p in spec.params if p.required and p.name not in node.args]
        if missing and not node.positional:  # given without its name: E116 says so
            plural = "s" if len(missing) > 1 else ""
            problems.append(
                error(
                    "E203",
                    f"tool `{spec.name}` needs argument{plural} {_listing(missing)}",
                    node.tool_span,
                    help=f"node {node.name} = {spec.name}("
                    + ", ".join(f"{m} = ..." for m in missing)
                    + ")",
                )
            )
    return problems


def _argument_types(node: Node, spec: ToolSpec) -> list[Diagnostic]:
    """E204 for each static argument whose value does not fit its parameter's annotation."""
    var_keyword = next((p for p in spec.params if p.kind == "var_keyword"), None)
    problems: list[Diagnostic] = []
    for arg, value in node.args.items():
        param = spec.param(arg) or var_keyword
        if param is None or param.type is None or param.type.is_any:
            continue
        found = problems_with(param.type, value, limit=1)
        if not found:
            continue
        wanted = param.type
        path, message = found[0]
        if path:
            text = (
                f"argument `{arg}` of `{spec.name}` must be {wanted}: at `{arg}{path}`, {message}"
            )
        else:
            text = f"argument `{arg}` of `{spec.name}` must be {_wanted(wanted)}, got {_got(value)}"
        span = node.arg_spans.get(arg, node.tool_span)
        hint = _argument_help(arg, wanted, value) or _default_help(param)
        problems.append(error("E204", text, span, hint))
    return problems


def _wanted(wanted: FlowType) -> str:
    if wanted.choices is None:
        return str(wanted)
    listed = ", ".join(_json(c) for c in wanted.choices)
    return f"one of {listed}" + (" or null" if wanted.nullable else "")


def _got(value: ast.Value) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return f"{describe(value)} ({_json(value)})"
    return describe(value)


def _argument_help(arg: str, wanted: FlowType, value: ast.Value) -> str | None:
    """`write fail_times = 2` when the value, read as the wanted kind, would fit."""
    if wanted.choices is not None:
        texts = [c for c in wanted.choices if isinstance(c, str)]
        match = closest(value, texts) if isinstance(value, str) and texts else None
        if match is not None:
            return f"did you mean `{arg} = {_json(match)}`?"
        choices = [_json(c) for c in wanted.choices]
        listed = choices[0] if len(choices) == 1 else ", ".join(choices[:-1]) + " or " + choices[-1]
        return f"`{arg}` takes {listed}"
    fixed = _as_kind(wanted.kind, value)
    return None if fixed is None else f"write `{arg} = {_json(fixed)}`"


def _default_help(param: ToolParam) -> str | None:
    """`write a whole number, like the default `max_fixes = 10``, when the default fits."""
    if param.default is None or param.type is None:
        return None
    try:
        default = literal_eval(param.default)  # the default's repr
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if problems_with(param.type, default, limit=1):
        return None
    return f"write {_a(param.type)}, like the default `{param.name} = {_json(default)}`"


def _a(wanted: FlowType) -> str:
    """`a whole number`, `a string`, ... for a help text."""
    names = {"int": "a whole number", "float": "a number", "str": "a string",
             "bool": "`true` or `false`", "list": "a list", "dict": "an object"}  # fmt: skip
    return names.get(wanted.kind, str(wanted))


def _as_kind(kind: str, value: ast.Value) -> ast.Value:
    """`value` read as a value of `kind` (`"2"` as 2, `2.0` as 2), or None when it is not one."""
    if kind in ("int", "float") and isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number) or (kind == "int" and not number.is_integer()):
            return None
        return int(number) if kind == "int" else number
    if kind == "int" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind == "bool" and isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if kind == "str" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _json(value)
    return None


def _json(value: ast.Value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _listing(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
