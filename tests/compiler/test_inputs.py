"""A flow's input schema, input checks and defaults, from a Program or from its IR alike."""

from __future__ import annotations

from typing import Any

import pytest

from flowc.compiler import compile_source
from flowc.compiler.inputs import (
    SCHEMA_DIALECT,
    InputProblem,
    Inputs,
    check_input,
    input_schema,
)
from flowc.compiler.ir import Flow, program_from_ir

TYPED = """\
flow typed
state code: str
state score: float = 0
state issues: list[dict[int]] = []
state meta: dict[str?] = {"by": "me"}
state reviewer: str? = null
state anything: any
a -> end
"""


@pytest.fixture(params=["program", "ir"])
def flow(request: pytest.FixtureRequest) -> Any:
    """The typed flow as a checked Program and as its IR."""
    ir = compile_source(TYPED).ir
    return program_from_ir(ir) if request.param == "program" else ir


def test_the_input_schema(flow: Any) -> None:
    assert input_schema(flow) == {
        "$schema": SCHEMA_DIALECT,
        "title": "typed",
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "score": {"type": "number", "default": 0},
            "issues": {
                "type": "array",
                "items": {"type": "object", "additionalProperties": {"type": "integer"}},
                "default": [],
            },
            "meta": {
                "type": "object",
                "additionalProperties": {"type": ["string", "null"]},
                "default": {"by": "me"},
            },
            "reviewer": {"type": ["string", "null"], "default": None},
            "anything": {},
        },
        "required": ["code", "anything"],
        "additionalProperties": True,
    }


def test_an_untyped_flow_takes_any_object() -> None:
    assert input_schema(compile_source("a -> end").ir) == {
        "$schema": SCHEMA_DIALECT,
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": True,
    }
    assert check_input(compile_source("a -> end").ir, {"x": 1}) == []


def test_an_input_that_fits(flow: Any) -> None:
    given = {"code": "x", "anything": None, "score": 1, "extra": [1, 2]}
    assert check_input(flow, given) == []


def test_each_problem_names_its_key_and_place(flow: Any) -> None:
    given = {"score": "1", "issues": [{"a": 1, "b/c": True}, 2], "meta": {"by": 3}}
    problems = check_input(flow, given)
    assert problems == [
        InputProblem(
            "code", "/code", ("code",), "a required input (`code: str`) is missing", "missing"
        ),
        InputProblem("score", "/score", ("score",), "expected float, got a string", "wrong_type"),
        InputProblem(
            "issues",
            "/issues/0/b~1c",
            ("issues", 0, "b/c"),
            "expected int, got a boolean (true)",
            "wrong_type",
        ),
        InputProblem(
            "issues",
            "/issues/1",
            ("issues", 1),
            "expected dict[int], got an integer",
            "wrong_type",
        ),
        InputProblem(
            "meta", "/meta/by", ("meta", "by"), "expected str?, got an integer", "wrong_type"
        ),
        InputProblem(
            "anything",
            "/anything",
            ("anything",),
            "a required input (`anything: any`) is missing",
            "missing",
        ),
    ]
    assert [problem.describe() for problem in problems] == [
        "`code`: a required input (`code: str`) is missing",
        "`score`: expected float, got a string",
        "`issues[0].b/c`: expected int, got a boolean (true)",
        "`issues[1]`: expected dict[int], got an integer",
        "`meta.by`: expected str?, got an integer",
        "`anything`: a required input (`anything: any`) is missing",
    ]


def test_null_is_a_value_only_for_nullable_keys(flow: Any) -> None:
    given = {"code": None, "anything": None, "reviewer": None}
    assert [p.describe() for p in check_input(flow, given)] == ["`code`: expected str, got null"]


def test_problems_are_bounded() -> None:
    inputs = Inputs.of(compile_source("state xs: list[int]\na -> end").ir)
    problems = inputs.problems({"xs": ["no"] * 1000})
    assert len(problems) == 20
    assert problems[-1].parts == ("xs", 19)


def test_defaults_are_fresh_copies(flow: Any) -> None:
    inputs = Inputs.of(flow)
    first = inputs.with_defaults({"code": "x", "score": 2.5})
    assert first == {
        "code": "x", "score": 2.5, "issues": [], "meta": {"by": "me"}, "reviewer": None,
    }  # fmt: skip
    first["issues"].append({"line": 1})
    first["meta"]["by"] = "someone else"
    second = inputs.with_defaults({})
    assert (second["issues"], second["meta"]) == ([], {"by": "me"})
    assert "code" not in second and "anything" not in second  # required: no default


def test_the_schema_is_worked_out_once_and_handed_out_as_a_copy() -> None:
    ir: Flow = compile_source(TYPED).ir
    inputs = Inputs.of(ir)
    schema = inputs.schema()
    schema["properties"]["issues"]["default"].append(1)
    assert inputs.schema()["properties"]["issues"]["default"] == []
    assert inputs.schema() == input_schema(inputs) == input_schema(ir)
