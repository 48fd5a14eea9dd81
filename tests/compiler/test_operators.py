"""The operator tables: strict typing, as DESIGN §2 says."""

from __future__ import annotations

from typing import Any

import pytest

from flowc.compiler.operators import (
    BINARY,
    FUNCTIONS,
    OperatorError,
    article,
    negate,
    require_bool,
    strict_equal,
    type_name,
)


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (False, 0, False),
        ("1", 1, False),
        (None, None, True),
        ([1, True], [1.0, True], True),
        ([True], [1], False),
        ({"a": 1}, {"a": 1}, True),
        ({"a": True}, {"a": 1}, False),
    ],
)
def test_strict_equality(left: Any, right: Any, equal: bool) -> None:
    assert strict_equal(left, right) is equal
    assert BINARY["!="](left, right) is (not equal)


@pytest.mark.parametrize(
    ("op", "left", "right", "message"),
    [
        ("<", "3", 4, "cannot compare string with int using `<`"),
        (">=", True, 1, "cannot compare bool with int using `>=`"),
        ("+", 1, "a", "cannot add int and string"),
        ("-", [1], [1], "`-` needs numbers, not list and list"),
        ("/", 1, 0, "division by zero"),
        ("%", 1.5, 0, "division by zero"),
        ("in", 1, 5, "`in` needs a list, a string or an object on the right, not int"),
        ("in", 1, "abc", "`in` a string needs a string on the left, not int"),
        ("*", 1e308, 10.0, "`*` overflowed"),
    ],
)
def test_type_errors(op: str, left: Any, right: Any, message: str) -> None:
    with pytest.raises(OperatorError) as caught:
        BINARY[op](left, right)
    assert str(caught.value) == message


def test_values() -> None:
    assert BINARY["+"]("a", "b") == "ab"
    assert BINARY["+"]([1], [2]) == [1, 2]
    assert BINARY["in"](True, [1, True]) is True
    assert BINARY["in"](True, [1]) is False
    assert BINARY["not in"]("x", "abc") is True
    assert BINARY["in"]("k", {"k": 1}) is True
    assert BINARY["/"](3, 2) == 1.5
    assert BINARY["%"](7, 3) == 1
    assert negate(2) == -2
    assert FUNCTIONS["len"]([1, 2]) == 2
    assert FUNCTIONS["min"](3, 1, 2) == 1
    assert FUNCTIONS["max"]([3, 9]) == 9
    assert FUNCTIONS["abs"](-4) == 4
    assert type_name({"a": 1}) == "object"


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("len", (3,), "len() needs a string, a list or an object, not int"),
        ("min", ([],), "min() of an empty list"),
        ("max", (1, "a"), "max() needs numbers or strings, not int, string"),
        ("abs", ("x",), "abs() needs a number, not string"),
    ],
)
def test_function_errors(name: str, args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(OperatorError) as caught:
        FUNCTIONS[name](*args)
    assert str(caught.value) == message


def test_negate_needs_a_number() -> None:
    with pytest.raises(OperatorError, match="unary `-` needs a number, not bool"):
        negate(True)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("int", "an"), ("object", "an"), ("bool", "a"), ("string", "a"), ("null", "a")],
)
def test_the_article_of_a_type_name(kind: str, expected: str) -> None:
    assert article(kind) == expected


def test_require_bool_names_where_a_bool_is_needed() -> None:
    assert require_bool(False, "`not`") is False
    with pytest.raises(OperatorError) as caught:
        require_bool(None, "`or`")
    assert str(caught.value) == "`or` needs a bool, not null"


@pytest.mark.parametrize(
    ("symbol", "left", "right"),
    [("/", 10**400, 3), ("+", 10**400, 1.0), ("-", 1.0, 10**400), ("*", 10**400, 1.5)],
)
def test_an_integer_too_big_for_a_float_overflows_as_an_operator_error(
    symbol: str, left: Any, right: Any
) -> None:
    with pytest.raises(OperatorError) as raised:
        BINARY[symbol](left, right)
    assert str(raised.value) == f"`{symbol}` overflowed"


def test_a_constant_that_overflows_is_a_diagnostic_not_a_crash() -> None:
    from flowc.compiler import check_source

    checked = check_source(f"a ? {'9' * 400} / 3 > 1 -> b : end\nb -> end\n")
    assert [(d.code, d.message) for d in checked.errors] == [("E303", "`/` overflowed")]
