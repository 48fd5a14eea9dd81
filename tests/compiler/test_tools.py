"""Static arguments against their parameters' types (E204): what fits, the message, the help."""

from __future__ import annotations

import pytest

from flowc.compiler import ToolParam, ToolSpec, check_source
from flowc.compiler.types import ANY, BOOL, FLOAT, INT, STR, FlowType, dict_of, list_of
from flowc.dsl.diagnostics import Diagnostic

MODE = FlowType("str", choices=("fast", "safe"))


def specs() -> dict[str, ToolSpec]:
    params = (
        ToolParam("times", default="0", type=INT),
        ToolParam("ratio", type=FLOAT),
        ToolParam("flag", type=BOOL),
        ToolParam("name", type=STR.or_null()),
        ToolParam("mode", default="'fast'", type=MODE),
        ToolParam("tags", type=list_of(STR)),
        ToolParam("limits", type=dict_of(INT)),
        ToolParam("free", type=ANY),
        ToolParam("untyped"),
    )
    return {
        "tool": ToolSpec("tool", params),
        "open": ToolSpec("open", (ToolParam("options", "var_keyword", type=INT),)),
    }


def e204(arguments: str, tool: str = "tool") -> list[Diagnostic]:
    checked = check_source(f"node t = {tool}({arguments})\nt -> end", tools=specs())
    return [d for d in checked.diagnostics if d.code == "E204"]


@pytest.mark.parametrize(
    "arguments",
    [
        "times = 3", "ratio = 2", "ratio = 2.5", "flag = false", "name = null",
        'name = "x"', 'mode = "safe"', 'tags = ["a", "b"]', "tags = []",
        'limits = {"a": 1}', 'free = {"x": [1, "a"]}', 'untyped = "anything"',
    ],
)  # fmt: skip
def test_values_that_fit_are_not_reported(arguments: str) -> None:
    assert e204(arguments) == []


@pytest.mark.parametrize(
    ("arguments", "message", "help"),
    [
        ('times = "2"', 'argument `times` of `tool` must be int, got a string ("2")',
         "write `times = 2`"),
        ("times = 2.0", "argument `times` of `tool` must be int, got a number (2.0)",
         "write `times = 2`"),
        ("times = true", "argument `times` of `tool` must be int, got a boolean (true)",
         "write a whole number, like the default `times = 0`"),
        ('times = "many"', 'argument `times` of `tool` must be int, got a string ("many")',
         "write a whole number, like the default `times = 0`"),
        ('ratio = "0.5"', 'argument `ratio` of `tool` must be float, got a string ("0.5")',
         "write `ratio = 0.5`"),
        ("ratio = true", "argument `ratio` of `tool` must be float, got a boolean (true)", None),
        ('flag = "true"', 'argument `flag` of `tool` must be bool, got a string ("true")',
         "write `flag = true`"),
        ("flag = 1", "argument `flag` of `tool` must be bool, got an integer (1)", None),
        ("name = 42", "argument `name` of `tool` must be str?, got an integer (42)",
         'write `name = "42"`'),
        ('mode = "fsat"', 'argument `mode` of `tool` must be one of "fast", "safe", '
         'got a string ("fsat")', 'did you mean `mode = "fast"`?'),
        ("mode = null", 'argument `mode` of `tool` must be one of "fast", "safe", got null',
         '`mode` takes "fast" or "safe"'),
        ('tags = "a"', 'argument `tags` of `tool` must be list[str], got a string ("a")', None),
        ('tags = ["a", 2]', "argument `tags` of `tool` must be list[str]: at `tags/1`, "
         "expected str, got an integer", None),
        ('limits = {"a": "1"}', "argument `limits` of `tool` must be dict[int]: at "
         "`limits/a`, expected int, got a string", None),
    ],
)  # fmt: skip
def test_values_that_do_not_fit(arguments: str, message: str, help: str | None) -> None:
    [problem] = e204(arguments)
    assert (problem.message, problem.help) == (message, help)


def test_the_error_points_at_the_argument() -> None:
    [problem] = e204('times = 1, mode = "x"')
    span = problem.span
    assert (span.line, span.column, span.end_column) == (1, 26, 36)  # `mode = "x"`


def test_keyword_arguments_of_a_typed_var_keyword_are_checked() -> None:
    [problem] = e204('a = 1, b = "2"', tool="open")
    assert problem.message == 'argument `b` of `open` must be int, got a string ("2")'


def test_an_unknown_parameter_is_e202_not_e204() -> None:
    checked = check_source('node t = tool(tims = "2")\nt -> end', tools=specs())
    assert [d.code for d in checked.diagnostics] == ["E202"]
