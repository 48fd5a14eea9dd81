"""The compiler rejects before a run what the run would reject, in the same words (E303)."""

from __future__ import annotations

from typing import Any

import pytest

from flowc.compiler import check_source
from flowc.runtime.conditions import ConditionError
from tests.runtime.test_conditions import condition

#: (a condition the compiler sees whole, the same with a value the run reads from the state,
#: that state, what both say is wrong, what the run adds about the value it read)
CASES = [
    ("-true == -1", "-t == -1", {"t": True},
     "unary `-` needs a number, not bool", "`t` is true, a bool"),
    ('-"1" == -1', "-t == -1", {"t": "1"},
     "unary `-` needs a number, not string", '`t` is "1", a string'),
    ("not 1", "not t", {"t": 1}, "`not` needs a bool, not int", "`t` is 1, an int"),
    ("1 and true", "t and true", {"t": 1}, "`and` needs a bool, not int", "`t` is 1, an int"),
    ("false or null", "false or t", {"t": None},
     "`or` needs a bool, not null", "`t` is null, a null"),
    ('"3" < 4', "t < 4", {"t": "3"},
     "cannot compare string with int using `<`", '`t` is "3", a string'),
    ("true >= 1", "t >= 1", {"t": True},
     "cannot compare bool with int using `>=`", "`t` is true, a bool"),
    ("1 in 2", "1 in t", {"t": 2},
     "`in` needs a list, a string or an object on the right, not int", "`t` is 2, an int"),
    ("len(1) > 0", "len(t) > 0", {"t": 1},
     "len() needs a string, a list or an object, not int", "`t` is 1, an int"),
    ("abs(true) > 0", "abs(t) > 0", {"t": True},
     "abs() needs a number, not bool", "`t` is true, a bool"),
    ('min(1, "a") > ""', 'min(t, "a") > ""', {"t": 1},
     "min() needs numbers or strings, not int, string", "`t` is 1, an int"),
    ("[1] + 1 == [1]", "t + 1 == [1]", {"t": [1]}, "cannot add list and int", "`t` is [1], a list"),
    # Not a type, but a value the compiler can see: it fails whenever the run evaluates it.
    ("1 / 0 > 0", "t / 0 > 0", {"t": 1}, "division by zero", "`t` is 1, an int"),
    ("2 % 0 == 1", "t % 0 == 1", {"t": 2}, "division by zero", "`t` is 2, an int"),
    ("min([]) > 0", "min(t) > 0", {"t": []}, "min() of an empty list", "`t` is [], a list"),
    ("1e308 * 10.0 > 0", "t * 10.0 > 0", {"t": 1e308}, "`*` overflowed", "`t` is 1e+308, a float"),
]  # fmt: skip


def compiler_errors(text: str) -> list[tuple[str, str]]:
    checked = check_source(f"x ? {text} -> y : end\ny -> end\n")
    return [(d.code, d.message) for d in checked.diagnostics]


@pytest.mark.parametrize(("static", "dynamic", "state", "problem", "detail"), CASES)
def test_the_compiler_and_the_run_agree(
    static: str, dynamic: str, state: dict[str, Any], problem: str, detail: str
) -> None:
    assert compiler_errors(static) == [("E303", problem)]
    assert compiler_errors(dynamic) == []
    with pytest.raises(ConditionError) as caught:
        condition(dynamic)(state)
    assert caught.value.message == f"the condition on line 1: {problem} ({detail})"


@pytest.mark.parametrize(
    ("text", "column", "end_column"),
    [
        ("1 / 0 > 0", 5, 10),  # the division, not the comparison around it
        ("a or 1 / 0 > 0", 10, 15),  # also where `a` may decide first, as with types
        ("[min([])] == [1]", 6, 13),
    ],
)
def test_a_constant_that_fails_is_pointed_at(text: str, column: int, end_column: int) -> None:
    checked = check_source(f"x ? {text} -> y : end\ny -> end\n")
    assert [(d.code, d.span.column, d.span.end_column) for d in checked.diagnostics] == [
        ("E303", column, end_column)
    ]


ALWAYS = {
    True: ("W504", "the condition does not read the state and is always true"),
    False: ("E308", "the condition is always false, so this arm never leads to `y`"),
}


@pytest.mark.parametrize(
    ("static", "dynamic", "state", "value"),
    [
        # Bools are not numbers, and a list literal reads the paths it holds.
        ("true == 1", "t == 1", {"t": True}, False),
        ("1 == 1.0", "t == 1.0", {"t": 1}, True),
        ("not true", "not t", {"t": True}, False),
        ("2 in [1, 2]", "2 in [a, 1]", {"a": 2}, True),
    ],
)
def test_constant_conditions_are_what_the_run_computes(
    static: str, dynamic: str, state: dict[str, Any], value: bool
) -> None:
    assert compiler_errors(static) == [ALWAYS[value]]
    assert compiler_errors(dynamic) == []
    assert condition(dynamic)(state) is value
