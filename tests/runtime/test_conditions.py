"""Runtime conditions: closures over the operator tables, strict types, clear failures."""

from __future__ import annotations

from typing import Any

import pytest

from flowc.compiler import compile_source
from flowc.runtime.conditions import ConditionError, compile_condition

State = dict[str, Any]


def condition(text: str) -> Any:
    """The compiled closure of `x ? TEXT -> y : end`."""
    ir = compile_source(f"x ? {text} -> y : end\ny -> end\n").ir
    branch = ir.routes["x"]
    assert branch.kind == "branch"
    return compile_condition(branch.arms[0].condition, "the condition on line 1")


@pytest.mark.parametrize(
    ("text", "state", "expected"),
    [
        ("score < 80", {"score": 79}, True),
        ("score < 80", {"score": 80.0}, False),
        ("score <= 80 and score >= 80", {"score": 80}, True),
        ("not done", {"done": False}, True),
        ("a or b", {"a": False, "b": True}, True),
        ("a == 1", {"a": 1.0}, True),
        ("a == 1", {"a": True}, False),
        ("a != null", {"a": 0}, True),
        ("name == 'x' + \"y\"", {"name": "xy"}, True),
        ("review.score > 1", {"review": {"score": 2}}, True),
        ("issues[0].line == 3", {"issues": [{"line": 3}]}, True),
        ("issues[-1] == 9", {"issues": [1, 9]}, True),
        ('labels["needs review"]', {"labels": {"needs review": True}}, True),
        ("x in [1, 2]", {"x": 2}, True),
        ("x not in [1, 2]", {"x": True}, True),
        ("'ab' in text", {"text": "cab"}, True),
        ("key in obj", {"key": "k", "obj": {"k": 1}}, True),
        ("len(items) == 2", {"items": [1, 2]}, True),
        ("len(name) > 2", {"name": "abc"}, True),
        ("exists(a.b)", {"a": {"b": None}}, True),
        ("exists(a.b)", {"a": {}}, False),
        ("exists(a[3])", {"a": [1]}, False),
        ("default(attempts, 0) < 3", {}, True),
        ("default(attempts, 0) < 3", {"attempts": None}, True),
        ("default(attempts, 0) < 3", {"attempts": 5}, False),
        ("min(a, b) == 1 and max(a, b) == 2", {"a": 2, "b": 1}, True),
        ("max(scores) == 9", {"scores": [3, 9]}, True),
        ("abs(d) == 2", {"d": -2}, True),
        ("-n == 3", {"n": -3}, True),
        ("n * 2 + 1 == 7 and n % 2 == 1 and n / 2 == 1.5 and n - 1 == 2", {"n": 3}, True),
        ("(a or b) and c", {"a": True, "b": False, "c": False}, False),
    ],
)
def test_values(text: str, state: State, expected: bool) -> None:
    assert condition(text)(state) is expected


def test_and_or_short_circuit() -> None:
    # The right side is never looked at, so its missing key is no error.
    assert condition("false_flag and missing > 1")({"false_flag": False}) is False
    assert condition("true_flag or missing > 1")({"true_flag": True}) is True


@pytest.mark.parametrize(
    ("text", "state", "code", "message"),
    [
        ("score < 80", {"score": "79"}, "condition_error",
         'the condition on line 1: cannot compare string with int using `<` '
         '(`score` is "79", a string)'),
        ("score < 80", {}, "missing_key",
         "the condition on line 1: no key `score` in the state; keys present: none"),
        ("a.b.c > 1", {"a": {"b": {"d": 1, "e": 2}}}, "missing_key",
         "the condition on line 1: no key `c` in `a.b`; keys present: `d`, `e`"),
        ("a[5] > 1", {"a": [1]}, "missing_key",
         "the condition on line 1: index 5 is out of range for `a`, a list of 1"),
        ("a.b > 1", {"a": 3}, "condition_error",
         "the condition on line 1: cannot look up `b` in `a`: it is 3, a int"),
        ("not flag", {"flag": 1}, "condition_error",
         "the condition on line 1: `not` needs a bool (`flag` is 1, a int)"),
        ("flag and true", {"flag": "yes"}, "condition_error",
         'the condition on line 1: `and` needs bools (`flag` is "yes", a string)'),
        ("n / 0 > 1", {"n": 1}, "condition_error",
         "the condition on line 1: division by zero (`n` is 1, a int)"),
        ("len(n) > 1", {"n": 1}, "condition_error",
         "the condition on line 1: len() needs a string, a list or an object, not int "
         "(`n` is 1, a int)"),
        ("default(n, 0) < 1", {"n": "x"}, "condition_error",
         'the condition on line 1: cannot compare string with int using `<` '
         '(`n` is "x", a string)'),
        ("n", {"n": 3}, "condition_error",
         "the condition on line 1: a condition must be true or false, but it gave 3, a int"),
    ],
)  # fmt: skip
def test_failures(text: str, state: State, code: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        condition(text)(state)
    assert (caught.value.code, caught.value.message) == (code, message)
    assert caught.value.span is not None and caught.value.span["line"] == 1


class Sneaky(dict[str, Any]):
    """A dict subclass with an attribute a path must never reach."""

    secret = "attribute"


def test_paths_never_read_attributes() -> None:
    check = condition("secret == 'attribute'")
    with pytest.raises(ConditionError) as caught:
        check(Sneaky())
    assert caught.value.code == "missing_key"
    with pytest.raises(ConditionError):
        condition("a.__class__ == 1")({"a": {}})
