"""Shared fixtures: tool specs for compiler tests, and the PostgreSQL requirement switch."""

from __future__ import annotations

import os

import pytest

from flowc.compiler import ToolParam, ToolSpec

#: Set in CI: a test that needs PostgreSQL fails instead of skipping when it is missing.
REQUIRE_POSTGRES = os.environ.get("FLOWC_REQUIRE_POSTGRES") == "1"


def fake_tools() -> dict[str, ToolSpec]:
    """The code-review tool names with their static parameters, as plain specs."""
    specs = [
        ToolSpec("analyze_syntax", doc="Parse the code."),
        ToolSpec("check_style", doc="Find style problems."),
        ToolSpec("score_code", doc="Score the code."),
        ToolSpec("refine_code", (ToolParam("max_fixes", default="10"),), doc="Fix things."),
        ToolSpec("analyze"),
        ToolSpec("style"),
        ToolSpec("score"),
        ToolSpec("refine", (ToolParam("max_fixes", default="10"),)),
        ToolSpec("notify", (ToolParam("channel", required=True),), doc="Send a message."),
    ]
    return {spec.name: spec for spec in specs}


@pytest.fixture
def tools() -> dict[str, ToolSpec]:
    """Tool specs for compiler tests, independent of the runtime's registry."""
    return fake_tools()
