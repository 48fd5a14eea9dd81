"""Tool signatures as plain values: what the compiler checks node declarations against.

The runtime's registry builds a `ToolSpec` from each registered function; the compiler
never imports the runtime, it is handed the specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowc.compiler.program import Program
from flowc.compiler.suggestions import did_you_mean
from flowc.compiler.types import ANY, FlowType
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
    """Every node's tool exists, its arguments are parameters, and none is missing."""
    problems: list[Diagnostic] = []
    for node in program.nodes.values():
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
        missing = [p.name for p in spec.params if p.required and p.name not in node.args]
        if missing:
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


def _listing(names: list[str]) -> str:
    quoted = [f"`{n}`" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]
