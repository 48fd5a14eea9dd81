"""compiler/types.py: the type text round-trips, values are checked by path, types compose."""

from __future__ import annotations

import pytest

from flowc.compiler.types import (
    ANY,
    FLOAT,
    INT,
    NULL,
    STR,
    FlowType,
    TypeSyntaxError,
    dict_of,
    is_assignable,
    join,
    json_schema,
    list_of,
    parse_type,
    problems_with,
    type_of,
)


@pytest.mark.parametrize(
    "text", ["str", "int?", "list", "list[dict]", "dict[list[int?]]?", "any", "list[list[str]]"]
)
def test_the_text_of_a_type_reads_back_as_that_type(text: str) -> None:
    assert str(parse_type(text)) == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("string", "unknown type `string`"),
        ("int[str]", "`int` takes no item type"),
        ("list[int", "a `]` is missing"),
        ("str??", "unexpected `?`"),
        ("list[" * 40 + "int" + "]" * 40, "nests more than 32 deep"),
    ],
)
def test_a_text_that_is_no_type_says_why(text: str, message: str) -> None:
    with pytest.raises(TypeSyntaxError, match=message.replace("[", r"\[").replace("?", r"\?")):
        parse_type(text)


def test_a_long_bad_type_is_clipped_in_the_message() -> None:
    with pytest.raises(TypeSyntaxError) as caught:
        parse_type("x" * 100_000)
    assert len(str(caught.value)) < 120


def test_problems_name_the_path_of_each_bad_item() -> None:
    wanted = list_of(dict_of(INT))
    assert problems_with(wanted, [{"a": 1}, {"b": "2"}, 3]) == [
        ("/1/b", "expected int, got a string"),
        ("/2", "expected dict[int], got an integer"),
    ]
    assert problems_with(STR.or_null(), None) == []
    assert problems_with(INT, True) == [("", "expected int, got a boolean (true)")]
    assert problems_with(FLOAT, 3) == []
    assert problems_with(ANY, {"anything": [1]}) == []


def test_a_deep_value_is_checked_without_recursion() -> None:
    deep: object = 1
    for _ in range(100_000):
        deep = [deep]
    assert problems_with(list_of(), deep) == []


def test_assignability_is_gradual_and_covariant() -> None:
    assert is_assignable(INT, FLOAT) and not is_assignable(FLOAT, INT)
    assert is_assignable(NULL, STR.or_null()) and not is_assignable(NULL, STR)
    assert not is_assignable(STR.or_null(), STR)
    assert is_assignable(list_of(INT), list_of(FLOAT))
    assert is_assignable(ANY, INT) and is_assignable(INT, ANY)


def test_join_is_the_narrowest_common_type() -> None:
    assert join(INT, FLOAT) == FLOAT
    assert join(STR, NULL) == STR.or_null()
    assert join(list_of(INT), list_of(STR)) == FlowType("list")
    assert join(STR, INT) == ANY


def test_type_of_a_value() -> None:
    assert type_of([1, 2]) == list_of(INT)
    assert type_of({"a": "x", "b": 1}) == dict_of()
    assert type_of(None) == NULL


def test_json_schema() -> None:
    assert json_schema(parse_type("list[int?]?")) == {
        "type": ["array", "null"],
        "items": {"type": ["integer", "null"]},
    }
    assert json_schema(ANY) == {}
    choices = FlowType("str", choices=("a", "b"))
    assert json_schema(choices) == {"type": "string", "enum": ["a", "b"]}


def test_a_whole_float_is_an_int_where_the_type_wants_one() -> None:
    from flowc.compiler.types import normalized

    assert normalized(INT, 3.0) == 3 and type(normalized(INT, 3.0)) is int
    assert normalized(INT, 3.5) == 3.5  # not whole: left for the check to refuse
    assert normalized(FLOAT, 3.0) == 3.0 and type(normalized(FLOAT, 3.0)) is float
    typed = parse_type("dict[list[int]]")
    assert normalized(typed, {"a": [1.0, 2], "b": []}) == {"a": [1, 2], "b": []}
    same = {"a": [1, 2]}
    assert normalized(typed, same) is same  # nothing changed: nothing copied


def test_a_whole_float_past_64_bits_stays_a_float_and_is_refused() -> None:
    from flowc.compiler.types import normalized

    assert type(normalized(INT, 2.0**63)) is float
    assert problems_with(INT, normalized(INT, 1e300)) == [("", "expected int, got a number")]
    assert normalized(INT, -(2.0**63)) == -(2**63)
