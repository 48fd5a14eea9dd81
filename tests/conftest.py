"""Shared fixtures: tool specs for compiler tests, the PostgreSQL switch, Hypothesis profiles.

Property tests are deterministic unless asked otherwise: the `deterministic` profile derives
every draw from the test itself and keeps no example database, so two clones pass or fail
alike.  `make fuzz` selects the `fuzz` profile: random seeds, and failures kept in
`.hypothesis/` so the next `make fuzz` tries them first.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from flowc.compiler import ToolParam, ToolSpec
from flowc.compiler.types import INT, STR, FlowType

#: Set in CI: a test that needs PostgreSQL fails instead of skipping when it is missing.
REQUIRE_POSTGRES = os.environ.get("FLOWC_REQUIRE_POSTGRES") == "1"

#: The environment variable that picks the Hypothesis profile (`deterministic` when unset).
PROFILE_VARIABLE = "FLOWC_HYPOTHESIS_PROFILE"

settings.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
settings.register_profile(
    "fuzz",
    derandomize=False,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    deadline=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
)
settings.load_profile(os.environ.get(PROFILE_VARIABLE, "deterministic"))


#: The state declarations of the typed flow the CLI and the server tests share, and the input
#: schema they give (a route follows them in each test's flow).
TYPED_STATE = """\
flow typed_review
state code: str
state attempts: int = 0
state issues: list[dict[int]] = []
state reviewer: str? = null
"""
TYPED_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "typed_review",
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "attempts": {"type": "integer", "default": 0},
        "issues": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": {"type": "integer"}},
            "default": [],
        },
        "reviewer": {"type": ["string", "null"], "default": None},
    },
    "required": ["code"],
    "additionalProperties": True,
}


def fake_tools() -> dict[str, ToolSpec]:
    """The code-review tool names with their static parameters, as plain specs."""
    specs = [
        ToolSpec("analyze_syntax", doc="Parse the code."),
        ToolSpec("check_style", doc="Find style problems."),
        ToolSpec("score_code", doc="Score the code."),
        ToolSpec(
            "refine_code", (ToolParam("max_fixes", default="10", type=INT),), doc="Fix things."
        ),
        ToolSpec("analyze"),
        ToolSpec("style"),
        ToolSpec("score"),
        ToolSpec("refine", (ToolParam("max_fixes", default="10", type=INT),)),
        ToolSpec("notify", (ToolParam("channel", required=True),), doc="Send a message."),
        ToolSpec(
            "call_api",
            (
                ToolParam("url", required=True, type=STR),
                ToolParam("fail_times", default="0", type=INT),
                ToolParam("mode", default="'fast'", type=FlowType("str", choices=("fast", "safe"))),
            ),
            doc="Call an API (typed parameters).",
        ),
        *typed_tools(),
    ]
    return {spec.name: spec for spec in specs}


def typed_tools() -> list[ToolSpec]:
    """Code-review tools with contracts: the keys each reads and writes, for data-flow tests."""
    from flowc.compiler.tools import KeyContract as Key
    from flowc.compiler.types import BOOL, dict_of, list_of

    code = (Key("code", STR),)
    return [
        ToolSpec("typed_analyze", reads=code, writes=(Key("syntax_ok", BOOL),)),
        ToolSpec(
            "typed_style",
            reads=code,
            writes=(Key("issues", list_of(dict_of())), Key("style_ok", BOOL)),
        ),
        ToolSpec("typed_score", reads=code, writes=(Key("score", INT),)),
        ToolSpec(
            "typed_refine",
            reads=(*code, Key("attempts", INT, required=False)),
            writes=(Key("code", STR, required=False), Key("attempts", INT)),
        ),
        ToolSpec("typed_review", reads=(Key("score", INT),), writes=(Key("approved", BOOL),)),
    ]


@pytest.fixture
def tools() -> dict[str, ToolSpec]:
    """Tool specs for compiler tests, independent of the runtime's registry."""
    return fake_tools()
