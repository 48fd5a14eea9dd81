"""Python functions -> registered tools: `@register_tool` and the `ToolSpec` of each.

A tool takes the state as its first parameter and its static arguments as keyword
arguments.  The registry turns each signature into a `compiler.ToolSpec`, which the
compiler checks node declarations against before anything runs.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload

from flowc.compiler.tools import ParamKind, ToolParam, ToolSpec
from flowc.runtime.contracts import flow_type, reads_and_writes, resolved_hints

F = TypeVar("F", bound=Callable[..., Any])
ToolMode = Literal["sync", "async", "thread", "process"]
#: Where a worker process finds a process tool's function: module, qualified name, file.
Reference = tuple[str, str, str | None]

_KINDS: dict[Any, ParamKind] = {
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


class ToolDefinitionError(TypeError):
    """A function that cannot be a tool (no state parameter, positional-only arguments)."""


class ToolConflictError(ToolDefinitionError):
    """A name that another function is already registered under, without `replace=True`."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A registered tool: the function, its spec, and how the interpreter calls it.

    `mode`: `sync` tools are called inline (in a thread of their own when their node has a
    timeout), `async` ones awaited, `thread` (blocking) ones run in a thread of their own,
    `process` (CPU-bound) ones in a worker process (`runtime.processes`).
    """

    function: Callable[..., Any]
    spec: ToolSpec
    mode: ToolMode = "sync"


def tool_spec(function: Callable[..., Any], name: str, *, blocking: bool = False) -> ToolSpec:
    """The `ToolSpec` of `function`: its first parameter is the state, the rest static.

    Annotations give the contract (`runtime.contracts`): the static parameters' types, and
    the keys read and written when the state parameter and the return are `TypedDict`s.
    """
    signature = inspect.signature(function)
    params = list(signature.parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise ToolDefinitionError(
            f"tool `{name}`: the first parameter must take the state, as in `def {name}(state)`"
        )
    if blocking and inspect.iscoroutinefunction(function):
        raise ToolDefinitionError(f"tool `{name}`: `blocking=True` is for sync functions only")
    hints = resolved_hints(function, signature)
    static: list[ToolParam] = []
    for param in params[1:]:
        kind = _KINDS.get(param.kind)
        if kind is None:
            raise ToolDefinitionError(
                f"tool `{name}`: parameter `{param.name}` must be passable by keyword"
            )
        has_default = param.default is not inspect.Parameter.empty
        annotation = None
        if param.annotation is not inspect.Parameter.empty:
            annotation = (
                param.annotation if isinstance(param.annotation, str) else
                getattr(param.annotation, "__name__", repr(param.annotation))
            )  # fmt: skip
        static.append(
            ToolParam(
                name=param.name,
                kind=kind,
                required=kind != "var_keyword" and not has_default,
                default=repr(param.default) if has_default else None,
                annotation=annotation,
                type=flow_type(hints[param.name]) if param.name in hints else None,
            )
        )
    reads, writes = reads_and_writes(function, params[0].name, hints)
    return ToolSpec(
        name=name,
        params=tuple(static),
        doc=inspect.getdoc(function) or "",
        state_param=params[0].name,
        is_async=inspect.iscoroutinefunction(function),
        blocking=blocking,
        origin=origin(function),
        location=location(function),
        reads=reads,
        writes=writes,
    )


def origin(function: Callable[..., Any]) -> str:
    """`module.qualname` of a function, as people write it in an import."""
    module = getattr(function, "__module__", None) or "?"
    qualname = getattr(function, "__qualname__", None) or getattr(function, "__name__", "?")
    return f"{module}.{qualname}"


def location(function: Callable[..., Any]) -> str:
    """`file:line` where a function is defined, or "" when Python does not know."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    if code is None:
        return ""
    return f"{code.co_filename}:{code.co_firstlineno}"


class Registry:
    """Tools by name.  `register_tool` adds to the default registry, `REGISTRY`."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def add(
        self,
        function: Callable[..., Any],
        name: str | None = None,
        *,
        blocking: bool = False,
        process: bool = False,
        replace: bool = False,
    ) -> Tool:
        """Register `function` under `name` (default: its own name).

        A name already taken by another function is a `ToolConflictError` naming both,
        unless `replace` is true.  The same function again (its module imported a second
        time) replaces its earlier self quietly.  `blocking` runs it in a thread, `process`
        in a worker process (for CPU-bound work, which a thread would not take off the
        event loop); a process tool is a sync function at the top level of a module.
        """
        tool_name = name or function.__name__
        spec = tool_spec(function, tool_name, blocking=blocking)
        if process:
            _check_process_tool(function, tool_name, blocking)
        earlier = self._tools.get(tool_name)
        if earlier is not None and not replace and not _same_definition(earlier.spec, spec):
            raise ToolConflictError(
                f"tool `{tool_name}` is already registered by {_describe(earlier.spec)}; "
                f"{_describe(spec)} cannot take its name: register it under another name, "
                "or pass `replace=True` to replace it"
            )
        mode: ToolMode = (
            "async" if spec.is_async else "process" if process else "thread" if blocking else "sync"
        )
        tool = Tool(function, spec, mode)
        self._tools[tool_name] = tool
        return tool

    def get(self, name: str) -> Tool | None:
        """The tool called `name`, or None."""
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(sorted(self._tools.values(), key=lambda t: t.spec.name))

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self) -> dict[str, ToolSpec]:
        """Every tool's spec by name: what the compiler checks against."""
        return {name: tool.spec for name, tool in self._tools.items()}

    def remove(self, name: str) -> None:
        """Forget the tool called `name` (tests use it to undo a registration)."""
        self._tools.pop(name, None)


def reference(function: Callable[..., Any]) -> Reference | None:
    """Where a worker process finds `function`; None when it cannot (a nested function)."""
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or hasattr(function, "__self__"):
        return None
    file = getattr(sys.modules.get(module), "__file__", None)
    return module, qualname, file


def _check_process_tool(function: Callable[..., Any], name: str, blocking: bool) -> None:
    if blocking or inspect.iscoroutinefunction(function):
        raise ToolDefinitionError(
            f"tool `{name}`: `process=True` is for sync functions, without `blocking=True`"
        )
    if reference(function) is None:
        raise ToolDefinitionError(
            f"tool `{name}`: `process=True` needs a function a worker process can import: "
            "one defined at the top level of a module other than `__main__`"
        )


def _same_definition(earlier: ToolSpec, later: ToolSpec) -> bool:
    """True for one definition seen twice: the same function, its module imported again."""
    return bool(earlier.location) and (earlier.origin, earlier.location) == (
        later.origin,
        later.location,
    )


def _describe(spec: ToolSpec) -> str:
    where = f" ({spec.location})" if spec.location else ""
    return f"`{spec.origin}`{where}"


REGISTRY = Registry()


@overload
def register_tool(function: F, /) -> F: ...
@overload
def register_tool(
    name: str | None = None,
    /,
    *,
    blocking: bool = False,
    process: bool = False,
    replace: bool = False,
    registry: Registry | None = None,
) -> Callable[[F], F]: ...
def register_tool(
    function_or_name: Any = None,
    /,
    *,
    blocking: bool = False,
    process: bool = False,
    replace: bool = False,
    registry: Registry | None = None,
) -> Any:
    """Register a tool: `@register_tool`, `@register_tool("name")`, `@register_tool(blocking=True)`.

    `blocking=True` marks a sync tool that the interpreter runs in a thread of its own,
    `process=True` a CPU-bound one that it runs in a worker process.  A name
    that another function holds is an error unless `replace=True` (`@register_tool("score",
    replace=True)` swaps a built-in for your own).
    """
    target = registry if registry is not None else REGISTRY
    if callable(function_or_name):
        target.add(function_or_name)
        return function_or_name

    def decorate(function: F) -> F:
        target.add(function, function_or_name, blocking=blocking, process=process, replace=replace)
        return function

    return decorate
