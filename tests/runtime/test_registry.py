"""The tool registry: bare and named registration, specs from signatures."""

from __future__ import annotations

from typing import Any

import pytest

from flowc.compiler.tools import ToolParam
from flowc.compiler.types import INT
from flowc.runtime import (
    REGISTRY,
    Registry,
    ToolConflictError,
    ToolDefinitionError,
    register_tool,
)


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
    assert spec.params == (ToolParam("limit", "keyword_only", False, "3", "int", INT),)
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


def _first_line(function: Any) -> int:
    return int(function.__code__.co_firstlineno)


def test_a_taken_name_is_an_error_that_names_both_functions() -> None:
    registry = Registry()

    def score_code(state: dict[str, Any]) -> None:
        """The first."""

    def my_score(state: dict[str, Any]) -> None:
        """The second."""

    registry.add(score_code, "score")
    with pytest.raises(ToolConflictError) as caught:
        registry.add(my_score, "score")
    here = __file__
    assert str(caught.value) == (
        "tool `score` is already registered by "
        f"`tests.runtime.test_registry.{score_code.__qualname__}` "
        f"({here}:{_first_line(score_code)}); "
        f"`tests.runtime.test_registry.{my_score.__qualname__}` "
        f"({here}:{_first_line(my_score)}) cannot take its name: "
        "register it under another name, or pass `replace=True` to replace it"
    )
    tool = registry.get("score")
    assert tool is not None and tool.function is score_code  # the first one stays


def test_replace_true_takes_the_name() -> None:
    registry = Registry()

    @register_tool("score", registry=registry)
    def builtin(state: dict[str, Any]) -> None:
        """Built in."""

    @register_tool("score", replace=True, registry=registry)
    def mine(state: dict[str, Any]) -> None:
        """Mine."""

    tool = registry.get("score")
    assert tool is not None and tool.function is mine and len(registry) == 1


def test_the_same_definition_again_replaces_itself_quietly() -> None:
    # A module imported a second time defines new function objects at the same place.
    registry = Registry()
    source = "def again(state):\n    return None\n"
    first: dict[str, Any] = {"__name__": "pack"}
    second: dict[str, Any] = {"__name__": "pack"}
    exec(compile(source, "pack.py", "exec"), first)
    exec(compile(source, "pack.py", "exec"), second)
    registry.add(first["again"])
    registry.add(second["again"])
    tool = registry.get("again")
    assert tool is not None and tool.function is second["again"]
    assert (tool.spec.origin, tool.spec.location) == ("pack.again", "pack.py:1")


def test_same_name_from_another_file_is_not_the_same_definition() -> None:
    registry = Registry()
    source = "def again(state):\n    return None\n"
    first: dict[str, Any] = {"__name__": "pack"}
    second: dict[str, Any] = {"__name__": "pack"}
    exec(compile(source, "one/pack.py", "exec"), first)
    exec(compile(source, "two/pack.py", "exec"), second)
    registry.add(first["again"])
    with pytest.raises(
        ToolConflictError, match=r"\(one/pack.py:1\); `pack.again` \(two/pack.py:1\)"
    ):
        registry.add(second["again"])


def test_a_builtin_name_needs_replace() -> None:
    import flowc.runtime.tools.code_review  # noqa: F401  (registers the built-in tools)

    def score(state: dict[str, Any]) -> None:
        """Not the built-in."""

    with pytest.raises(ToolConflictError, match=r"already registered by `flowc\.runtime\.tools"):
        REGISTRY.add(score)
    builtin = REGISTRY.get("score")
    assert builtin is not None and builtin.function is not score
