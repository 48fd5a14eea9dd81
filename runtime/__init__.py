"""The runtime: the tool registry, the interpreter and its events, the built-in tools.

The registry and `current_step()` load eagerly; the interpreter (which needs pydantic for
the IR) and the tool threads load on first use, so `flowc check` can read the registry
without paying for pydantic or asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowc.runtime.context import NoStepError, StepContext, current_step
from flowc.runtime.registry import (
    REGISTRY,
    Registry,
    Tool,
    ToolConflictError,
    ToolDefinitionError,
    register_tool,
)

if TYPE_CHECKING:
    from flowc.runtime.calls import tool_threads
    from flowc.runtime.events import ChildEvent, Event, RunError, RunEvent, RunResult, Step
    from flowc.runtime.interpreter import Resume, WorkflowEngine

_LAZY = {
    "WorkflowEngine": "flowc.runtime.interpreter",
    "Resume": "flowc.runtime.interpreter",
    "tool_threads": "flowc.runtime.calls",
    "Event": "flowc.runtime.events",
    "ChildEvent": "flowc.runtime.events",
    "RunEvent": "flowc.runtime.events",
    "RunError": "flowc.runtime.events",
    "RunResult": "flowc.runtime.events",
    "Step": "flowc.runtime.events",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowc.runtime' has no attribute {name!r}")


__all__ = [
    "REGISTRY",
    "ChildEvent",
    "Event",
    "NoStepError",
    "Registry",
    "Resume",
    "RunError",
    "RunEvent",
    "RunResult",
    "Step",
    "StepContext",
    "Tool",
    "ToolConflictError",
    "ToolDefinitionError",
    "WorkflowEngine",
    "current_step",
    "register_tool",
    "tool_threads",
]

if __name__ != "flowc.runtime":  # this folder imported by its bare name, from a checkout
    raise ImportError(f"import `flowc.runtime`, not `{__name__}`: flowc installs as one namespace")
