"""Runtime conditions: closures over the operator tables, strict types, clear failures."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowc.compiler import compile_source
from flowc.compiler.operators import BINARY, Budget, OperatorError
from flowc.runtime.conditions import ConditionError, compile_condition, show

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
        # `not` turns true into false, not only false into true.
        ("not done", {"done": True}, False),
        # A negative index counts from the end: `-1` is the last item, also of a list of one.
        ("a[-1] == 7", {"a": [7]}, True),
        ("a[0] == 7 and a[-1] == 7", {"a": [7]}, True),
        ("exists(a[-1])", {"a": [7]}, True),
        ("exists(a[-2])", {"a": [7]}, False),
        ("exists(a[1])", {"a": [7]}, False),
        ("default(a[-1], 0) == 7", {"a": [7]}, True),
        ("default(a[-2], 0) == 0", {"a": [7]}, True),
        # A list literal evaluates the paths it holds against the state.
        ("x in [a, 2]", {"x": 5, "a": 5}, True),
        ("x in [a, 2]", {"x": 2, "a": 5}, True),
        ("x in [a, 2]", {"x": 3, "a": 5}, False),
        ("[a, b] == [1, 2]", {"a": 1, "b": 2}, True),
        # `default`'s fallback is an expression too, evaluated against the same state.
        ("default(a, b) == 2", {"b": 2}, True),
        ("default(a, b) == 2", {"a": None, "b": 2}, True),
        ("default(a, b) == 2", {"a": 2, "b": 3}, True),
        ("default(a.b, 0) == 0", {"a": 3}, True),
        # `exists` is true for a null value and false where a step cannot be taken.
        ("exists(a)", {"a": None}, True),
        ("exists(a)", {}, False),
        ("exists(a.b.c)", {"a": {}}, False),
        ("exists(a.b)", {"a": [1]}, False),
        ("exists(a[0])", {"a": {"0": 1}}, False),
        ("exists(a[0])", {"a": "xyz"}, False),
        ("exists(a[0].b)", {"a": [{"b": 1}]}, True),
        # The right side of `and` / `or` decides when the left does not.
        ("a and b", {"a": True, "b": False}, False),
        ("a or b", {"a": False, "b": False}, False),
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
         "the condition on line 1: cannot look up `b` in `a`: it is 3, an int"),
        ("not flag", {"flag": 1}, "condition_error",
         "the condition on line 1: `not` needs a bool, not int (`flag` is 1, an int)"),
        ("flag and true", {"flag": "yes"}, "condition_error",
         'the condition on line 1: `and` needs a bool, not string (`flag` is "yes", a string)'),
        ("n / 0 > 1", {"n": 1}, "condition_error",
         "the condition on line 1: division by zero (`n` is 1, an int)"),
        ("len(n) > 1", {"n": 1}, "condition_error",
         "the condition on line 1: len() needs a string, a list or an object, not int "
         "(`n` is 1, an int)"),
        ("default(n, 0) < 1", {"n": "x"}, "condition_error",
         'the condition on line 1: cannot compare string with int using `<` '
         '(`n` is "x", a string)'),
        ("n", {"n": 3}, "condition_error",
         "the condition on line 1: a condition must be true or false, but it gave 3, an int"),
        # Strict typing: a bool is not a number, so `-true` is an error, not -1.
        ("-t == -1", {"t": True}, "condition_error",
         "the condition on line 1: unary `-` needs a number, not bool (`t` is true, a bool)"),
        ("-t == 1", {"t": "1"}, "condition_error",
         'the condition on line 1: unary `-` needs a number, not string (`t` is "1", a string)'),
        ("not t", {"t": None}, "condition_error",
         "the condition on line 1: `not` needs a bool, not null (`t` is null, a null)"),
        ("t or f", {"t": False, "f": 0}, "condition_error",
         "the condition on line 1: `or` needs a bool, not int (`f` is 0, an int)"),
        # Indexes past either end are missing, and the message names the index.
        ("a[-2] == 7", {"a": [7]}, "missing_key",
         "the condition on line 1: index -2 is out of range for `a`, a list of 1"),
        ("a[1] == 7", {"a": [7]}, "missing_key",
         "the condition on line 1: index 1 is out of range for `a`, a list of 1"),
        ("a[-1] == 7", {"a": []}, "missing_key",
         "the condition on line 1: index -1 is out of range for `a`, a list of 0"),
        # Keys look into objects and indexes into lists; any other step is a type error.
        ("a.b == 1", {"a": [1]}, "condition_error",
         "the condition on line 1: cannot look up `b` in `a`: it is [1], a list"),
        ("a[0] == 1", {"a": {"0": 1}}, "condition_error",
         'the condition on line 1: cannot look up [0] in `a`: it is {"0": 1}, an object'),
        ("a[0] == 1", {"a": "xyz"}, "condition_error",
         'the condition on line 1: cannot look up [0] in `a`: it is "xyz", a string'),
        ("a.b.c == 1", {"a": {"b": None}}, "condition_error",
         "the condition on line 1: cannot look up `c` in `a.b`: it is null, a null"),
        # The path to the failing step is written as the DSL writes it.
        ("a[0].b.c == 1", {"a": [{"b": {}}]}, "missing_key",
         "the condition on line 1: no key `c` in `a[0].b`; keys present: none"),
        ("a[-1].b == 1", {"a": [{"c": 1}]}, "missing_key",
         "the condition on line 1: no key `b` in `a[-1]`; keys present: `c`"),
        ('m["needs review"].x == 1', {"m": {"needs review": {"k": 1}}}, "missing_key",
         'the condition on line 1: no key `x` in `m["needs review"]`; keys present: `k`'),
        ('m["café"].x == 1', {"m": {"café": {}}}, "missing_key",
         'the condition on line 1: no key `x` in `m["café"]`; keys present: none'),
        ("m.end.x == 1", {"m": {"end": {}}}, "missing_key",
         "the condition on line 1: no key `x` in `m.end`; keys present: none"),
        # At most twelve keys are listed, in order; the rest are counted.
        ("z == 1", dict.fromkeys("abcdefghijkl", 0), "missing_key",
         "the condition on line 1: no key `z` in the state; keys present: "
         "`a`, `b`, `c`, `d`, `e`, `f`, `g`, `h`, `i`, `j`, `k`, `l`"),
        ("z == 1", dict.fromkeys("mlkjihgfedcba", 0), "missing_key",
         "the condition on line 1: no key `z` in the state; keys present: "
         "`a`, `b`, `c`, `d`, `e`, `f`, `g`, `h`, `i`, `j`, `k`, `l` and 1 more"),
        ("z == 1", dict.fromkeys("abcdefghijklmno", 0), "missing_key",
         "the condition on line 1: no key `z` in the state; keys present: "
         "`a`, `b`, `c`, `d`, `e`, `f`, `g`, `h`, `i`, `j`, `k`, `l` and 3 more"),
        # Every operand read from a path is shown; operands that are not paths are not.
        ("a < b", {"a": 1, "b": "x"}, "condition_error",
         'the condition on line 1: cannot compare int with string using `<` '
         '(`a` is 1, an int; `b` is "x", a string)'),
        ("(a + 1) < 'x'", {"a": 1}, "condition_error",
         "the condition on line 1: cannot compare int with string using `<`"),
        ("len(a + 1) > 0", {"a": 1}, "condition_error",
         "the condition on line 1: len() needs a string, a list or an object, not int"),
        ("max(a, b) > 0", {"a": 1, "b": "x"}, "condition_error",
         "the condition on line 1: max() needs numbers or strings, not int, string "
         '(`a` is 1, an int; `b` is "x", a string)'),
        ("default(a, 0) + b > 0", {"a": 1, "b": "x"}, "condition_error",
         "the condition on line 1: cannot add int and string "
         '(`a` is 1, an int; `b` is "x", a string)'),
        # A long value is cut to 60 characters.
        ("a < 1", {"a": "x" * 100}, "condition_error",
         "the condition on line 1: cannot compare string with int using `<` "
         '(`a` is "' + "x" * 56 + '..., a string)'),
    ],
)  # fmt: skip
def test_failures(text: str, state: State, code: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        condition(text)(state)
    assert (caught.value.code, caught.value.message) == (code, message)
    assert str(caught.value) == message
    assert caught.value.span is not None and caught.value.span["line"] == 1


def test_a_condition_without_a_source_is_called_the_condition() -> None:
    ir = compile_source("x ? n -> y : end\ny -> end\n").ir
    branch = ir.routes["x"]
    assert branch.kind == "branch"
    check = compile_condition(branch.arms[0].condition)
    with pytest.raises(ConditionError) as caught:
        check({"n": 1})
    assert caught.value.message == (
        "the condition: a condition must be true or false, but it gave 1, an int"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("café", '"café"'),
        ("x" * 58, '"' + "x" * 58 + '"'),
        ("x" * 59, '"' + "x" * 56 + "..."),
        ([1, None, True], "[1, null, true]"),
        # A value JSON cannot hold (only a caller outside the engine can pass one).
        ({1}, "{1}"),
        ({(1, 2): 3}, "{(1, 2): 3}"),
    ],
)
def test_show(value: Any, shown: str) -> None:
    assert show(value) == shown


def test_show_a_value_that_holds_itself() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    assert show(looped) == "[1, [...]]"


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


ORDERING = ["<", "<=", ">", ">="]
#: Values of every kind a state holds, numbers most: the ordering operators' inline case.
ANY_VALUE = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@given(op=st.sampled_from(ORDERING), a=ANY_VALUE, b=ANY_VALUE)
def test_ordering_two_values_says_what_the_operator_table_says(op: str, a: Any, b: Any) -> None:
    # Two numbers are compared inline (no call into the operator table), anything else
    # goes through the table: either way the answer, or the refusal, is the table's.
    try:
        expected: Any = BINARY[op](a, b, Budget())
    except OperatorError as problem:
        expected = problem
    evaluate = condition(f"a {op} b")
    if isinstance(expected, OperatorError):
        with pytest.raises(ConditionError) as caught:
            evaluate({"a": a, "b": b})
        assert str(expected) in caught.value.message
    else:
        assert evaluate({"a": a, "b": b}) is expected


#: Constants as a flow writes them, and their values: `_quick`'s inline case is `KEY OP LITERAL`.
LITERALS = {
    "3": 3, "-7": -7, "0.5": 0.5, "1000.0": 1000.0, "true": True, "false": False,
    "null": None, "'ab'": "ab", "''": "", f"'{'x' * 70}'": "x" * 70,
}  # fmt: skip
_ABSENT = object()
#: State values for that key: of every kind, equal or not to the constants, strings on both
#: sides of a unit of work's 64 characters, or no key at all.
KEY_VALUES = [
    3, 3.0, -7, -7.0, 0.5, 1000, 1000.0, 10**30, -(10**30), 1e300, True, False, 1, 0, None,
    "ab", "", "3", "x" * 70, "x" * 63, "x" * 64, "y" * 200, [3], {"k": 3}, _ABSENT,
]  # fmt: skip


@pytest.mark.parametrize(
    ("op", "literal"),
    # Equality with any constant, an ordering with a number (the checks refuse the others).
    [(op, literal) for op in ("==", "!=") for literal in LITERALS]
    + [(op, text) for op in ORDERING for text, v in LITERALS.items() if type(v) in (int, float)],
)
@pytest.mark.parametrize("swapped", [False, True])
def test_a_key_against_a_constant_answers_as_the_full_evaluation_does(
    op: str, literal: str, swapped: bool
) -> None:
    # `KEY OP LITERAL` has its common case inline (`_quick`): a bool, or the full
    # evaluation's own answer, refusal or limit, whichever the value.
    text = f"{literal} {op} k" if swapped else f"k {op} {literal}"
    quick = condition(text)
    with patch("flowc.runtime.conditions._quick", return_value=None):
        full = condition(text)
    assert getattr(quick, "__name__", "") in ("ordered", "equality")
    assert getattr(full, "__name__", "") == "condition"

    def outcome(evaluate: Any, state: State) -> Any:
        try:
            return evaluate(state)
        except ConditionError as problem:
            return (problem.code, problem.message)

    for value in KEY_VALUES:
        state = {} if value is _ABSENT else {"k": value}
        assert outcome(quick, state) == outcome(full, state), value
