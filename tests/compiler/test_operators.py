"""The operator tables: strict typing, as DESIGN §2 says."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowc.compiler.operators import (
    BINARY,
    FUNCTIONS,
    Budget,
    LimitError,
    OperatorError,
    article,
    negate,
    require_bool,
    strict_equal,
    type_name,
)
from flowc.dsl.limits import MAX_CONDITION_LIST, MAX_CONDITION_STRING, MAX_CONDITION_WORK


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
    assert BINARY["!="](left, right, Budget()) is (not equal)


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
        BINARY[op](left, right, Budget())
    assert str(caught.value) == message


def binary(op: str, left: Any, right: Any) -> Any:
    return BINARY[op](left, right, Budget())


def call(name: str, *args: Any) -> Any:
    return FUNCTIONS[name](args, Budget())


def test_values() -> None:
    assert binary("+", "a", "b") == "ab"
    assert binary("+", [1], [2]) == [1, 2]
    assert binary("in", True, [1, True]) is True
    assert binary("in", True, [1]) is False
    assert binary("in", "a", [1, "a"]) is True
    assert binary("in", "1", [1]) is False
    assert binary("in", 1, ["1", 1.0]) is True
    assert binary("not in", "x", "abc") is True
    assert binary("in", "k", {"k": 1}) is True
    assert binary("/", 3, 2) == 1.5
    assert binary("%", 7, 3) == 1
    assert negate(2) == -2
    assert call("len", [1, 2]) == 2
    assert call("min", 3, 1, 2) == 1
    assert call("max", [3, 9]) == 9
    assert call("abs", -4) == 4
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
        FUNCTIONS[name](args, Budget())
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
        binary(symbol, left, right)
    assert str(raised.value) == f"`{symbol}` overflowed"


def test_a_constant_that_overflows_is_a_diagnostic_not_a_crash() -> None:
    from flowc.compiler import check_source

    checked = check_source(f"a ? {'9' * 400} / 3 > 1 -> b : end\nb -> end\n")
    assert [(d.code, d.message) for d in checked.errors] == [("E303", "`/` overflowed")]


# ------------------------------------------------------------------ limits

OUT_OF_RANGE = "gives an integer outside the signed 64-bit range that conditions compute in"
BIGGEST = 2**63 - 1


@pytest.mark.parametrize(
    ("op", "left", "right"),
    [("+", BIGGEST, 1), ("-", -BIGGEST, 2), ("*", 2**32, 2**31), ("%", 10**30, 10**29 + 7)],
)
def test_an_integer_result_must_fit_in_64_bits(op: str, left: int, right: int) -> None:
    with pytest.raises(LimitError) as caught:
        binary(op, left, right)
    assert str(caught.value) == f"`{op}` {OUT_OF_RANGE}"


def test_the_64_bit_range_is_inclusive() -> None:
    assert binary("+", BIGGEST - 1, 1) == BIGGEST
    assert binary("-", -BIGGEST, 1) == -(2**63)
    assert binary("*", -(2**32), 2**31) == -(2**63)
    assert binary("*", 3_037_000_499, 3_037_000_499) == 3_037_000_499**2
    assert negate(BIGGEST) == -BIGGEST
    with pytest.raises(LimitError, match=f"`-` {OUT_OF_RANGE}"):
        negate(-(2**63))
    with pytest.raises(LimitError, match=f"`abs\\(\\)` {OUT_OF_RANGE}"):
        call("abs", -(2**63))


class CountingInt(int):
    """An int that counts how often it is multiplied."""

    products = 0

    def __mul__(self, other: Any) -> Any:
        CountingInt.products += 1
        return int(self) * other


def test_a_huge_product_is_refused_before_it_is_computed() -> None:
    huge = CountingInt(10**4000)
    with pytest.raises(LimitError, match=f"`\\*` {OUT_OF_RANGE}"):
        binary("*", huge, huge)
    assert CountingInt.products == 0
    assert binary("*", CountingInt(3), 4) == 12
    assert CountingInt.products == 1


def test_strings_and_lists_over_their_limit_are_refused_before_they_are_built() -> None:
    half = "x" * (MAX_CONDITION_STRING // 2)
    assert len(binary("+", half, half)) == MAX_CONDITION_STRING
    with pytest.raises(LimitError) as caught:
        binary("+", half, half + "y")
    assert str(caught.value) == (
        "`+` would build a string of 1,048,577 characters; the limit is 1,048,576"
    )
    items = [0] * (MAX_CONDITION_LIST // 2)
    assert len(binary("+", items, items)) == MAX_CONDITION_LIST
    with pytest.raises(LimitError) as caught:
        binary("+", items, [*items, 1])
    assert str(caught.value) == "`+` would build a list of 100,001 items; the limit is 100,000"


WORK = (
    "the work limit is reached: the conditions of one routing decision may compare, "
    "search and build at most 500,000 units of values"
)


@pytest.mark.parametrize(
    ("op", "left", "right", "units"),
    [
        # One unit per item looked at, and eight more per list or object compared.
        ("in", [1], [[0]] * 5, 5 + 5 * (8 + 1)),
        ("==", [[1, 2], [3]], [[1, 2], [3]], (8 + 2) + (8 + 2) + (8 + 1)),
        ("==", {"a": [1], "b": 2}, {"a": [1], "b": 2}, (8 + 2) + (8 + 1)),
        # Four items per unit where a list is searched at C speed.
        ("in", 1, [0] * 40, 10),
        ("in", "x", ["y"] * 40, 10),
        ("in", None, [0] * 40, 10),
        ("==", "x" * 640, "x" * 640, 10),  # 64 characters per unit
        ("in", "y", "x" * 639, 10),
        ("<", "x" * 6400, "x" * 640, 10),
        ("+", "x" * 320, "x" * 320, 10),
        ("+", [1] * 20, [2] * 20, 10),
    ],
)
def test_work_on_values_is_counted(op: str, left: Any, right: Any, units: int) -> None:
    budget = Budget(1_000)
    BINARY[op](left, right, budget)
    assert budget.left == 1_000 - units


def test_functions_count_the_items_they_look_at() -> None:
    budget = Budget(100)
    FUNCTIONS["max"]([list(range(30))], budget)
    FUNCTIONS["min"]((1, 2, 3), budget)
    FUNCTIONS["len"](([0] * 1000,), budget)
    assert budget.left == 100 - 30 - 3


def test_going_over_the_budget_is_a_limit_error_and_stays_one() -> None:
    budget = Budget(5)
    with pytest.raises(LimitError) as caught:
        BINARY["in"]([1], [[0]] * 6, budget)
    assert str(caught.value) == WORK
    with pytest.raises(LimitError):
        BINARY["=="]([1], [1], budget)
    assert Budget().left == MAX_CONDITION_WORK


def test_deep_values_compare_without_recursion() -> None:
    deep: Any = 1
    other: Any = 1
    for _ in range(100_000):
        deep, other = [deep], [other]
    assert strict_equal(deep, other)
    assert not strict_equal(deep, [[2]])
    assert not strict_equal([deep], [other, 1])
    with pytest.raises(LimitError):
        strict_equal(deep, other, Budget(1_000))


def test_a_limit_error_is_an_operator_error() -> None:
    assert issubclass(LimitError, OperatorError)


@pytest.mark.parametrize(
    ("item", "items", "found"),
    [
        (1, [True], False),
        (1, [True, 1.0], True),
        (0, [False, "0", None, [0]], False),
        (0, [False, -0.0], True),
        (True, [1, 1.0], False),
        (False, [0, True, False], True),
        (None, [0, False, "", []], False),
        (2, [2.0], True),
        (2.5, [True, 2.5], True),
        ("a", [["a"], {"a": 1}], False),
        (float("nan"), [float("nan")], False),
    ],
)
def test_in_a_list_is_strict(item: Any, items: list[Any], found: bool) -> None:
    assert binary("in", item, items) is found


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, -1.5]),
    st.text(max_size=2),
)


@given(scalars, st.lists(st.one_of(scalars, st.lists(scalars, max_size=2)), max_size=8))
def test_in_agrees_with_strict_equality(item: Any, items: list[Any]) -> None:
    assert binary("in", item, items) is any(strict_equal(item, element) for element in items)
