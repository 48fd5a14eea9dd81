"""The tool registry: bare and named registration, specs from signatures."""

from __future__ import annotations

from typing import Any

import pytest

from flowc.compiler.tools import ToolParam
from flowc.runtime import REGISTRY, Registry, ToolDefinitionError, register_tool


def test_bare_and_named_registration() -> None:
    registry = Registry()

    @register_tool(registry=registry)
    def first(state: dict[str, Any]) -> dict[str, Any]:
        """Do the first thing."""
        return {}

    @register_tool("second_name", blocking=True, registry=registry)
    def second(state: dict[str, Any], *, limit: int = 3) -> None:
        """Do the second thing.

        More text.
        """

    assert [t.spec.name for t in registry] == ["first", "second_name"]
    first_tool = registry.get("first")
    assert first_tool is not None and first_tool.function is first
    spec = registry.specs()["second_name"]
    assert spec.blocking and not spec.is_async
    assert spec.params == (ToolParam("limit", "keyword_only", False, "3", "int"),)
    assert spec.summary == "Do the second thing."
    assert "first" in registry and len(registry) == 2


def test_default_registry_decorator_returns_the_function() -> None:
    @register_tool
    def registry_probe_tool(state: dict[str, Any], level: int, **extra: Any) -> None:
        """Probe."""

    try:
        assert registry_probe_tool.__name__ == "registry_probe_tool"
        spec = REGISTRY.specs()["registry_probe_tool"]
        assert spec.state_param == "state"
        assert [(p.name, p.kind, p.required) for p in spec.params] == [
            ("level", "positional_or_keyword", True),
            ("extra", "var_keyword", False),
        ]
        assert spec.accepts_any_keyword
    finally:
        REGISTRY.remove("registry_probe_tool")


def test_async_tools_are_marked() -> None:
    registry = Registry()

    async def waits(state: dict[str, Any]) -> None:
        """Wait."""

    assert registry.add(waits).spec.is_async


@pytest.mark.parametrize(
    "source",
    [
        "def t(): pass",
        "def t(*, state): pass",
        "def t(state, *args): pass",
        "def t(state, x, /): pass",
    ],
)
def test_functions_that_cannot_be_tools(source: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(ToolDefinitionError):
        Registry().add(namespace["t"])


def test_blocking_async_is_refused() -> None:
    async def t(state: dict[str, Any]) -> None:
        """Nothing."""

    with pytest.raises(ToolDefinitionError, match="sync functions only"):
        Registry().add(t, blocking=True)
