"""Literal text -> values (dsl.literals): escapes, surrogate pairs, number limits."""

from __future__ import annotations

import pytest

from flowc.dsl.literals import (
    LiteralProblem,
    decode_float,
    decode_int,
    decode_string,
    number_problem,
)


@pytest.mark.parametrize(
    ("written", "value"),
    [
        ('""', ""),
        ("''", ""),
        ('"plain"', "plain"),
        (r'"\" \' \\ \/ \b \f \n \r \t"', "\" ' \\ / \b \f \n \r \t"),
        (r"'\u00e9\u00C9'", "éÉ"),
        (r'"\ud83d\ude00"', "😀"),
        (r'"\u0000"', "\x00"),
        ('"😀 raw"', "😀 raw"),
    ],
)
def test_strings_decode_json_escapes_and_single_quotes(written: str, value: str) -> None:
    assert decode_string(written) == value


@pytest.mark.parametrize(
    ("written", "message", "offset", "length"),
    [
        (r'"a\qb"', "invalid escape `\\q` in a string", 2, 2),
        (r'"\x41"', "invalid escape `\\x` in a string", 1, 2),
        (r'"ab\u12"', "a `\\u` escape needs four hexadecimal digits", 3, 2),
        (r'"\u00g9"', "a `\\u` escape needs four hexadecimal digits", 1, 2),
        (r'"\ud800"', "a `\\u` escape names a lone surrogate", 1, 6),
        (r'"x\udc00"', "a `\\u` escape names a lone surrogate", 2, 6),
        (r'"\ud800\u0041"', "a `\\u` escape names a lone surrogate", 1, 6),
    ],
)
def test_bad_escapes_say_where_they_are(
    written: str, message: str, offset: int, length: int
) -> None:
    with pytest.raises(LiteralProblem) as caught:
        decode_string(written)
    problem = caught.value
    assert (problem.message, problem.offset, problem.length) == (message, offset, length)


def test_integers_up_to_python_s_digit_limit() -> None:
    assert decode_int("9" * 4300) == 10**4300 - 1
    with pytest.raises(LiteralProblem) as caught:
        decode_int("9" * 4301)
    assert caught.value.message == "integer literal too long (4301 digits)"
    assert (caught.value.offset, caught.value.length) == (0, 4301)


@pytest.mark.parametrize("written", ["1e999", "1" + "0" * 400 + ".0"])
def test_floats_out_of_range_are_refused(written: str) -> None:
    with pytest.raises(LiteralProblem) as caught:
        decode_float(written)
    assert caught.value.message == "number out of range"


def test_floats_that_underflow_become_zero() -> None:
    assert decode_float("1e-999") == 0.0
    assert decode_float("1.7976931348623157e308") == 1.7976931348623157e308


@pytest.mark.parametrize(
    ("text", "message", "fix"),
    [
        (".5", "`.5` is not a number: it needs a digit before the `.`", "write `0.5`"),
        ("5. ", "`5.` is not a number: it needs a digit after the `.`", "write `5.0`"),
        ("1.e5", "`1.e5` is not a number: it needs a digit after the `.`", "write `1.0e5`"),
        ("007]", "`007` is not a number: only 0 itself starts with `0`", "write `7`"),
        ("1andy", "`1andy` is not a number: it runs into a name", "put a space after `1`"),
        ("1.5.5", "`1.5.5` is not a number: it has a second `.`", "write `1.5`"),
    ],
)
def test_number_forms_the_grammar_refuses_are_named_with_their_fix(
    text: str, message: str, fix: str
) -> None:
    found = number_problem(text, 0)
    assert found is not None
    problem, help_text = found
    assert (problem.message, help_text) == (message, fix)
    assert problem.length == len(text.rstrip(" ]"))


@pytest.mark.parametrize("text", ["0", "7", "0.5", "1e3", "2.5E-3", "10]"])
def test_numbers_json_writes_have_no_problem(text: str) -> None:
    assert number_problem(text, 0) is None
