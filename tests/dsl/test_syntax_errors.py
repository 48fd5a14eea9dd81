"""Syntax errors, word for word: messages, codes and spans, and recovery from several errors."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lark import Token
from lark.exceptions import UnexpectedInput

from flowc.dsl import FlowError, Span, ast, parse, parser
from flowc.dsl.diagnostics import Diagnostic, error
from flowc.dsl.limits import MAX_SYNTAX_ERRORS
from flowc.dsl.parser import lark_parser
from flowc.dsl.syntax_errors import syntax_diagnostic

Found = tuple[str, str, tuple[int, int, int, int]]


def problems(source: str) -> list[Found]:
    """(code, message, span) of every diagnostic `parse` raises for `source`."""
    with pytest.raises(FlowError) as caught:
        parse(source)
    return [
        (d.code, d.message, (d.span.line, d.span.column, d.span.end_line, d.span.end_column))
        for d in caught.value.diagnostics
    ]


@pytest.mark.parametrize(
    ("source", "code", "message", "span"),
    [
        # arrows and node names
        ("a -> -> b", "E010", "expected a node name after `->`, found `->`", (1, 6, 1, 8)),
        (
            "a ->",
            "E010",
            "expected a node name after `->`, found the end of the text",
            (1, 5, 1, 6),
        ),
        # at the end of a file that ends in new lines, the caret stays after the arrow
        (
            "a ->\n\n",
            "E010",
            "expected a node name after `->`, found the end of the text",
            (1, 5, 1, 6),
        ),
        ("a -> 1", "E010", "expected a node name after `->`, found `1`", (1, 6, 1, 7)),
        ("a", "E010", "expected `->` or `?` after `a`, found the end of the text", (1, 2, 1, 3)),
        ("a b", "E010", "expected `->` or `?` after `a`, found `b`", (1, 3, 1, 4)),
        ("a.b -> c", "E010", "expected `->` or `?` after `a`, found `.`", (1, 2, 1, 3)),
        ("-> a", "E010", "expected a statement, found `->`", (1, 1, 1, 3)),
        ('"a" -> b', "E010", 'expected a statement, found `"a"`', (1, 1, 1, 4)),
        (
            "a -> b -> c d",
            "E010",
            "expected `->`, `?` or the end of the statement after `c`, found `d`",
            (1, 13, 1, 14),
        ),
        # branches
        ("a ? x -> b", "E010", "expected `:` after `b`, found the end of the text", (1, 11, 1, 12)),
        (
            "a ? x -> b\nc -> d",
            "E010",
            "expected `:` after `b`, found the end of the line",
            (1, 11, 1, 12),
        ),
        (
            "a ? -> b : c",
            "E010",
            "expected an expression or `not` after `?`, found `->`",
            (1, 5, 1, 7),
        ),
        (
            "a ? x -> b :",
            "E010",
            "expected an expression, a node name or `not` after `:`, found the end of the text",
            (1, 13, 1, 14),
        ),
        ("a ? x -> : c", "E010", "expected a node name after `->`, found `:`", (1, 10, 1, 11)),
        ("a ? x -> b ? y -> c : d", "E010", "expected `:` after `b`, found `?`", (1, 12, 1, 13)),
        # conditions
        ("a ? x < -> y : z", "E010", "expected an expression after `<`, found `->`", (1, 9, 1, 11)),
        (
            "a ? x == = y -> b : c",
            "E010",
            "expected an expression after `==`, found `=`",
            (1, 10, 1, 11),
        ),
        ("a ? x not y -> b : c", "E010", "expected `in` after `not`, found `y`", (1, 11, 1, 12)),
        ("a ? (x -> b : c", "E010", "expected `)` after `x`, found `->`", (1, 8, 1, 10)),
        ("a ? f(x -> b : c", "E010", "expected `)` or `,` after `x`, found `->`", (1, 9, 1, 11)),
        (
            "a ? x[1.5] -> b : c",
            "E010",
            "expected `-`, a number or a string after `[`, found `1.5`",
            (1, 7, 1, 10),
        ),
        (
            "a ? x = 1 -> b : c",
            "E010",
            "expected an operator, `(` or `->` after `x`, found `=`",
            (1, 7, 1, 8),
        ),
        # statements with keywords
        ("flow", "E010", "expected a name after `flow`, found the end of the text", (1, 5, 1, 6)),
        (
            "flow\na -> b",
            "E010",
            "expected a name after `flow`, found the end of the line",
            (1, 5, 1, 6),
        ),
        (
            "flow a b",
            "E010",
            "expected the end of the statement after `a`, found `b`",
            (1, 8, 1, 9),
        ),
        ("node a", "E010", "expected `=` after `a`, found the end of the text", (1, 7, 1, 8)),
        ("node a = f(x)", "E010", "expected `=` after `x`, found `)`", (1, 13, 1, 14)),
        (
            "node a = f(x = 1 y = 2)",
            "E010",
            "expected `)` or `,` after `1`, found `y`",
            (1, 18, 1, 19),
        ),
        ("node a = f(x = y)", "E010", "expected a value after `=`, found `y`", (1, 16, 1, 17)),
        # policies
        (
            "node a = f foo",
            "E010",
            "expected `(`, `with` or the end of the statement after `f`, found `foo`",
            (1, 12, 1, 15),
        ),
        (
            "node a = f with",
            "E010",
            "expected a name after `with`, found the end of the text",
            (1, 16, 1, 17),
        ),
        (
            "node a = f with timeout",
            "E010",
            "expected `=` after `timeout`, found the end of the text",
            (1, 24, 1, 25),
        ),
        (
            "node a = f with timeout = 5 retries = 3",
            "E010",
            "expected `,` or the end of the statement after `5`, found `retries`",
            (1, 29, 1, 36),
        ),
        (
            "node a = f with timeout = 5,",
            "E010",
            "expected a name after `,`, found the end of the text",
            (1, 29, 1, 30),
        ),
        (
            "node a = f with retries = )",
            "E010",
            "expected a value or a node name after `=`, found `)`",
            (1, 27, 1, 28),
        ),
        (
            "node a = f with (timeout = 5)",
            "E010",
            "expected a name after `with`, found `(`",
            (1, 17, 1, 18),
        ),
        ("set x = ", "E010", "expected a value after `=`, found the end of the text", (1, 8, 1, 9)),
        (
            "set x = -",
            "E010",
            "expected a number after `-`, found the end of the text",
            (1, 10, 1, 11),
        ),
        (
            "set x = [1, 2",
            "E010",
            "expected `,` or `]` after `2`, found the end of the text",
            (1, 14, 1, 15),
        ),
        ("set x = {1: 2}", "E010", "expected `}` or a string after `{`, found `1`", (1, 10, 1, 11)),
        # characters the language has no use for
        ("a @ b", "E011", "unexpected character `@` after `a`", (1, 3, 1, 4)),
        ("a ? x ! y -> b : c", "E011", "unexpected `!` after `x`", (1, 7, 1, 8)),
        ("a -> b\x00", "E011", "unexpected character `\\x00` after `b`", (1, 7, 1, 8)),
        ("\x00", "E011", "unexpected character `\\x00`", (1, 1, 1, 2)),
        ("a -> b\rc -> d", "E011", "unexpected character `\\r` after `b`", (1, 7, 1, 8)),
        ("a\x1b -> b", "E011", "unexpected character `\\x1b` after `a`", (1, 2, 1, 3)),
        ("a\x7f -> b", "E011", "unexpected character `\\x7f` after `a`", (1, 2, 1, 3)),
        (
            "a\u2028-> b",
            "E011",
            "unexpected character `\\u2028` (U+2028 LINE SEPARATOR) after `a`",
            (1, 2, 1, 3),
        ),
        ("a -> b # comment\x00", "E011", "unexpected character `\\x00`", (1, 17, 1, 18)),
        (
            'a ? x == "a\x00b" -> b : c',
            "E011",
            "unexpected character `\\x00` in a string",
            (1, 12, 1, 13),
        ),
        (
            'a ? x == "\\\x01" -> b : c',  # a backslash does not excuse it
            "E011",
            "unexpected character `\\x01` in a string",
            (1, 12, 1, 13),
        ),
        # strings and numbers
        ('a ? x == "abc -> b : c', "E012", "unterminated string", (1, 10, 1, 11)),
        ('a ? x == "ab\\\nb -> c', "E012", "unterminated string", (1, 10, 1, 11)),
        ("a ? x == 'abc", "E012", "unterminated string", (1, 10, 1, 11)),
        ('a ? x == "ab\r\nb -> c', "E012", "unterminated string", (1, 10, 1, 11)),
        ('a ? x == "a\\qb" -> b : c', "E013", "invalid escape `\\q` in a string", (1, 12, 1, 14)),
        ("set x = '\\u12'", "E013", "a `\\u` escape needs four hexadecimal digits", (1, 10, 1, 12)),
        ('set x = "\\ud800"', "E013", "a `\\u` escape names a lone surrogate", (1, 10, 1, 16)),
        ("a ? x == 1e999 -> b : c", "E013", "number out of range", (1, 10, 1, 15)),
        ("set x = -1e999", "E013", "number out of range", (1, 10, 1, 15)),
        # reserved words
        (
            "node end = x",
            "E014",
            "`end` is a reserved word and cannot be used as a node name",
            (1, 6, 1, 9),
        ),
        (
            "node a = start",
            "E014",
            "`start` is a reserved word and cannot be used as a tool name",
            (1, 10, 1, 15),
        ),
        (
            "node a = f with end = 1",
            "E014",
            "`end` is a reserved word and cannot be used as a policy name",
            (1, 17, 1, 20),
        ),
        (
            "node a = f(in = 1)",
            "E014",
            "`in` is a reserved word and cannot be used as a parameter name",
            (1, 12, 1, 14),
        ),
        (
            "flow node",
            "E014",
            "`node` is a reserved word and cannot be used as a flow name",
            (1, 6, 1, 10),
        ),
        (
            "set flow = 1",
            "E014",
            "`flow` is a reserved word and cannot be used as a setting name",
            (1, 5, 1, 9),
        ),
        (
            "a ? end -> b : c",
            "E014",
            "`end` is a reserved word and cannot be used as a path",
            (1, 5, 1, 8),
        ),
        (
            "a ? in(x) -> b : c",
            "E014",
            "`in` is a reserved word and cannot be used as a function name",
            (1, 5, 1, 7),
        ),
        # objects
        ("set x = {\"a\": 1, 'a': 2}", "E016", "duplicate key 'a' in an object", (1, 18, 1, 21)),
    ],
)
def test_syntax_error_messages(
    source: str, code: str, message: str, span: tuple[int, int, int, int]
) -> None:
    assert problems(source) == [(code, message, span)]


def test_chained_comparisons_are_refused_with_a_suggestion() -> None:
    with pytest.raises(FlowError) as caught:
        parse("a ? 0 < x < 10 -> b : c")
    (found,) = caught.value.diagnostics
    assert (found.code, found.message, found.span) == (
        "E010",
        "comparisons do not chain: found `<` after `x`",
        Span(1, 11, 1, 12),
    )
    assert found.help == "join two comparisons with `and`, as in `a < b and b < c`"


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("a ? x == y != z -> b : c", "`!=`"),
        ("a ? x in y in z -> b : c", "`in`"),
        ("a ? x < y not in z -> b : c", "`not`"),
        ("a ? x + 1 >= y * 2 == z -> b : c", "`==`"),
    ],
)
def test_every_chained_comparison_says_so(source: str, found: str) -> None:
    ((code, message, _),) = problems(source)
    assert code == "E010"
    assert message.startswith(f"comparisons do not chain: found {found}")


def test_helps_for_reserved_words_and_strings() -> None:
    with pytest.raises(FlowError) as caught:
        parse('node end = f\na ? x == "abc -> b : c\nd ? y == "\x01" -> e : f')
    assert [d.help for d in caught.value.diagnostics] == [
        "rename it, for example `end_`",
        'close it with " on the same line',
        "write it as the escape `\\u0001`",
    ]


# ------------------------------------------------- hints: what people meant

Hinted = tuple[str, str, tuple[int, int, int, int], str | None]


def hinted(source: str) -> list[Hinted]:
    """(code, message, span, help) of every diagnostic `parse` raises for `source`."""
    with pytest.raises(FlowError) as caught:
        parse(source)
    return [
        (
            d.code,
            d.message,
            (d.span.line, d.span.column, d.span.end_line, d.span.end_column),
            d.help,
        )
        for d in caught.value.diagnostics
    ]


_BRANCH = "a branch is `NODE ? CONDITION -> TARGET : ELSE`"
_ELSE = "a branch ends with `: TARGET`, where the run goes when no condition holds"
_ASCII = (
    "outside strings and comments, a flow is written in ASCII: names are letters "
    "`A-Z`, `a-z`, digits and `_`"
)


@pytest.mark.parametrize(
    ("source", "code", "message", "span", "help"),
    [
        # `=` for `==`, `=>` for `->` (or for `>=` in a comparison), `=<`, `===`, `<>`
        (
            "score ? score = 80 -> end : score",
            "E010",
            "expected an operator, `(` or `->` after `score`, found `=`",
            (1, 15, 1, 16),
            "did you mean `==`?",
        ),
        (
            "analyze => score",
            "E010",
            "expected `->` or `?` after `analyze`, found `=>`",
            (1, 9, 1, 11),
            "did you mean `->`?",
        ),
        (
            "score ? ok => end : score",
            "E010",
            "expected an operator, `(` or `->` after `ok`, found `=>`",
            (1, 12, 1, 14),
            "did you mean `->`?",
        ),
        (
            "score ? score => 80 -> end : score",
            "E010",
            "expected an operator, `(` or `->` after `score`, found `=>`",
            (1, 15, 1, 17),
            "did you mean `>=`?",
        ),
        (
            "score ? score =< 80 -> end : score",
            "E010",
            "expected an operator, `(` or `->` after `score`, found `=<`",
            (1, 15, 1, 17),
            "did you mean `<=`?",
        ),
        (
            "score ? x === 1 -> end : score",
            "E010",
            "expected an expression after `==`, found `=`",
            (1, 13, 1, 14),
            "Flow compares with `==`; there is no `===`",
        ),
        (
            "score ? x <> 1 -> end : score",
            "E010",
            "expected an expression after `<`, found `>`",
            (1, 12, 1, 13),
            "did you mean `!=`?",
        ),
        # `&&`, `||`, `!` for `and`, `or`, `not`
        (
            "score ? x > 1 && ok -> end : score",
            "E011",
            "unexpected `&&` after `1`",
            (1, 15, 1, 17),
            "use `and` instead of `&&`",
        ),
        (
            "score ? x > 1 || ok -> end : score",
            "E011",
            "unexpected `||` after `1`",
            (1, 15, 1, 17),
            "use `or` instead of `||`",
        ),
        (
            "score ? x & ok -> end : score",
            "E011",
            "unexpected `&` after `x`",
            (1, 11, 1, 12),
            "use `and` instead of `&`",
        ),
        (
            "score ? !ok -> end : score",
            "E011",
            "unexpected `!` after `?`",
            (1, 9, 1, 10),
            "use `not` instead of `!` (`!=` is fine)",
        ),
        (
            "score ? x > 1 AND ok -> end : refine",
            "E010",
            "expected an operator or `->` after `1`, found `AND`",
            (1, 15, 1, 18),
            "keywords are lowercase: write `and`",
        ),
        # `//` and `/*` for `#`
        (
            "// a comment\na -> b",
            "E010",
            "expected a statement, found `//`",
            (1, 1, 1, 3),
            "`#` starts a comment",
        ),
        (
            "a -> b // a comment",
            "E010",
            "expected `->`, `?` or the end of the statement after `b`, found `//`",
            (1, 8, 1, 10),
            "`#` starts a comment",
        ),
        (
            "a -> b /* a comment */",
            "E010",
            "expected `->`, `?` or the end of the statement after `b`, found `/*`",
            (1, 8, 1, 10),
            "`#` starts a comment",
        ),
        (
            "score ? x // 2 > 1 -> end : score",
            "E010",
            "expected an expression after `/`, found `/`",
            (1, 12, 1, 13),
            "Flow has no `//`: `/` divides, and `#` starts a comment",
        ),
        # Python's conditional expression, `if`, `else`, `elif`, `is`
        (
            "score ? refine if score < 80 else end",
            "E010",
            "expected an operator, `(` or `->` after `refine`, found `if`",
            (1, 16, 1, 18),
            "Flow has no `if`; write the branch `score ? score < 80 -> refine : end`",
        ),
        (
            "score ? refine if score < 80",
            "E010",
            "expected an operator, `(` or `->` after `refine`, found `if`",
            (1, 16, 1, 18),
            f"Flow has no `if`: {_BRANCH}",
        ),
        (
            "if score < 80: refine",
            "E010",
            "expected `->` or `?` after `if`, found `score`",
            (1, 4, 1, 9),
            f"Flow has no `if`: {_BRANCH}",
        ),
        (
            "score ? ok -> end else refine",
            "E010",
            "expected `:` after `end`, found `else`",
            (1, 19, 1, 23),
            "use `:` instead of `else`",
        ),
        (
            "score ? ok -> end elif x -> refine : end",
            "E010",
            "expected `:` after `end`, found `elif`",
            (1, 19, 1, 23),
            "use `:` instead of `elif`, as in `: CONDITION -> TARGET`",
        ),
        (
            "score ? ok is None -> end : refine",
            "E010",
            "expected an operator, `(` or `->` after `ok`, found `is`",
            (1, 12, 1, 14),
            "write `== null`",
        ),
        (
            "score ? ok is not None -> end : refine",
            "E010",
            "expected an operator, `(` or `->` after `ok`, found `is`",
            (1, 12, 1, 14),
            "write `!= null`",
        ),
        (
            "score ? ok is done -> end : refine",
            "E010",
            "expected an operator, `(` or `->` after `ok`, found `is`",
            (1, 12, 1, 14),
            "use `==` instead of `is`",
        ),
        # `True`, `False`, `None` where a value is expected
        (
            "node a = t(x = True)",
            "E010",
            "expected a value after `=`, found `True`",
            (1, 16, 1, 20),
            "write `true`",
        ),
        (
            "set retries = None",
            "E010",
            "expected a value after `=`, found `None`",
            (1, 15, 1, 19),
            "write `null`",
        ),
        # branches: a missing `->`, a missing else, a comma for several targets
        (
            "score ? x > 1 end : refine",
            "E010",
            "expected an operator or `->` after `1`, found `end`",
            (1, 15, 1, 18),
            "did you forget `->` before `end`?",
        ),
        (
            "score ? x > 1 -> end",
            "E010",
            "expected `:` after `end`, found the end of the text",
            (1, 21, 1, 22),
            _ELSE,
        ),
        (
            "score ? x > 1 -> end\nrefine -> end",
            "E010",
            "expected `:` after `end`, found the end of the line",
            (1, 21, 1, 22),
            _ELSE,
        ),
        (
            "a -> b, c",
            "E010",
            "expected `->`, `?` or the end of the statement after `b`, found `,`",
            (1, 7, 1, 8),
            "to run them at the same time, write parallel branches: `a -> [b, c] -> JOIN`; "
            "to go to one of them, branch: `NODE ? CONDITION -> TARGET : ELSE`",
        ),
        # a missing `->`, `node` or `set`
        (
            "analyze style",
            "E010",
            "expected `->` or `?` after `analyze`, found `style`",
            (1, 9, 1, 14),
            "did you forget `->` between `analyze` and `style`?",
        ),
        (
            "analyze = analyze_syntax",
            "E010",
            "expected `->` or `?` after `analyze`, found `=`",
            (1, 9, 1, 10),
            "to bind a node to a tool, write `node analyze = analyze_syntax`",
        ),
        (
            "max_steps = 10",
            "E010",
            "expected `->` or `?` after `max_steps`, found `=`",
            (1, 11, 1, 12),
            "to give a setting, write `set max_steps = 10`",
        ),
        # `:` for `=` and `=` for `:`; a missing `,`
        (
            "set max_steps: 10",
            "E010",
            "expected `=` after `max_steps`, found `:`",
            (1, 14, 1, 15),
            "did you mean `=`?",
        ),
        (
            "node a = t(x: 1)",
            "E010",
            "expected `=` after `x`, found `:`",
            (1, 13, 1, 14),
            "did you mean `=`?",
        ),
        (
            'node a = t(x = {"k" = 1})',
            "E010",
            'expected `:` after `"k"`, found `=`',
            (1, 21, 1, 22),
            "did you mean `:`?",
        ),
        (
            "node a = t(x = 1 y = 2)",
            "E010",
            "expected `)` or `,` after `1`, found `y`",
            (1, 18, 1, 19),
            "put `,` between arguments",
        ),
        (
            "node a = t(x = 1\n  y = 2)",
            "E010",
            "expected `)` or `,` after `1`, found the end of the line",
            (1, 17, 1, 18),
            "end the line with `,` to go on with the arguments, or close with `)`",
        ),
        (
            "set x = [1 2]",
            "E010",
            "expected `,` or `]` after `1`, found `2`",
            (1, 12, 1, 13),
            "put `,` between items",
        ),
        # characters that look like ASCII, and others
        (
            "analyze \u2013> end",
            "E011",
            "unexpected character `\u2013` (U+2013 EN DASH) after `analyze`",
            (1, 9, 1, 10),
            "it looks like `-` but is not: write `->`",
        ),
        (
            "a \u2192 b",
            "E011",
            "unexpected character `\u2192` (U+2192 RIGHTWARDS ARROW) after `a`",
            (1, 3, 1, 4),
            "it looks like `->` but is not: write `->`",
        ),
        (
            "node a = t(x = \u201chello\u201d)",
            "E011",
            "unexpected character `\u201c` (U+201C LEFT DOUBLE QUOTATION MARK) after `=`",
            (1, 16, 1, 17),
            'it looks like `"` but is not: write `"hello"`',
        ),
        (
            "node a = t(x = \u2018hi\u2019)",
            "E011",
            "unexpected character `\u2018` (U+2018 LEFT SINGLE QUOTATION MARK) after `=`",
            (1, 16, 1, 17),
            "it looks like `'` but is not: write `'hi'`",
        ),
        (
            "a ->\u00a0b",
            "E011",
            "unexpected character `\\xa0` (U+00A0 NO-BREAK SPACE) after `->`",
            (1, 5, 1, 6),
            "it looks like a space but is not: type a plain space",
        ),
        (
            "sc\u043ere -> end",
            "E011",
            "unexpected character `\u043e` (U+043E CYRILLIC SMALL LETTER O) after `sc`",
            (1, 3, 1, 4),
            "it looks like `o` but is not: write `score`",
        ),
        (
            "a ? x \u2264 1 -> b : c",
            "E011",
            "unexpected character `\u2264` (U+2264 LESS-THAN OR EQUAL TO) after `x`",
            (1, 7, 1, 8),
            "it looks like `<=` but is not: write `<=`",
        ),
        (
            "a \uff1b b -> c",
            "E011",
            "unexpected character `\uff1b` (U+FF1B FULLWIDTH SEMICOLON) after `a`",
            (1, 3, 1, 4),
            "it looks like `;` but is not: write `;`",
        ),
        (
            "a ->\u200b b",
            "E011",
            "unexpected character `\\u200b` (U+200B ZERO WIDTH SPACE) after `->`",
            (1, 5, 1, 6),
            "it takes no room on the screen: delete it",
        ),
        (
            "caf\u00e9 -> end",
            "E011",
            "unexpected character `\u00e9` (U+00E9 LATIN SMALL LETTER E WITH ACUTE) after `caf`",
            (1, 4, 1, 5),
            _ASCII,
        ),
    ],
)
def test_hints_name_what_was_meant(
    source: str, code: str, message: str, span: tuple[int, int, int, int], help: str | None
) -> None:
    assert hinted(source) == [(code, message, span, help)]


def test_python_constants_in_conditions_are_warnings_with_the_literal_to_write() -> None:
    flow = parse("a ? ok == True or x != None -> b : c")
    assert [(d.code, d.message, d.span, d.help) for d in flow.warnings] == [
        (
            "W017",
            "`True` reads the state key `True`; it is not the constant `true`",
            Span(1, 11, 1, 15),
            "write `true`",
        ),
        (
            "W017",
            "`None` reads the state key `None`; it is not the constant `null`",
            Span(1, 24, 1, 28),
            "write `null`",
        ),
    ]
    assert parse("a ? True.x or y.True -> b : c").warnings == ()


def test_a_warning_does_not_stop_errors_from_being_reported() -> None:
    assert hinted("a ? False -> b : c\nnode end = t") == [
        (
            "W017",
            "`False` reads the state key `False`; it is not the constant `false`",
            (1, 5, 1, 10),
            "write `false`",
        ),
        (
            "E014",
            "`end` is a reserved word and cannot be used as a node name",
            (2, 6, 2, 9),
            "rename it, for example `end_`",
        ),
    ]


def test_a_missing_comma_inside_brackets_is_one_error_not_two() -> None:
    assert problems("node a = t(x = 1\n  y = 2)\nb -> c\nd -> -> e") == [
        ("E010", "expected `)` or `,` after `1`, found the end of the line", (1, 17, 1, 18)),
        ("E010", "expected a node name after `->`, found `->`", (4, 6, 4, 8)),
    ]


def test_a_slash_comment_is_skipped_to_its_line_end_whatever_it_ends_with() -> None:
    assert problems("// Steps:\nanalyze -> -> x\n") == [
        ("E010", "expected a statement, found `//`", (1, 1, 1, 3)),
        ("E010", "expected a node name after `->`, found `->`", (2, 12, 2, 14)),
    ]


def test_an_unclosed_bracket_stops_at_the_next_statement() -> None:
    assert problems("set x = [1, 2\nnode a = t\nb -> -> c") == [
        ("E010", "expected `,` or `]` after `2`, found the end of the line", (1, 14, 1, 15)),
        ("E010", "expected a node name after `->`, found `->`", (3, 6, 3, 8)),
    ]


# ------------------------------------------------------------------ recovery


def test_independent_errors_are_all_reported_with_their_lines() -> None:
    source = (
        "flow demo\n"
        "a -> -> b\n"  # 2: syntax
        "c ? x < -> d : e\n"  # 3: syntax
        "f @ g\n"  # 4: character
        "node end = f\n"  # 5: good syntax, reserved word
        'set x = {"k": 1, "k": 2}\n'  # 6: good syntax, duplicate key
        'h ? "\\q" == y -> i : j\n'  # 7: good syntax, bad escape
        "k -> l\n"
    )
    assert problems(source) == [
        ("E010", "expected a node name after `->`, found `->`", (2, 6, 2, 8)),
        ("E010", "expected an expression after `<`, found `->`", (3, 9, 3, 11)),
        ("E011", "unexpected character `@` after `f`", (4, 3, 4, 4)),
        ("E014", "`end` is a reserved word and cannot be used as a node name", (5, 6, 5, 9)),
        ("E016", 'duplicate key "k" in an object', (6, 18, 6, 21)),
        ("E013", "invalid escape `\\q` in a string", (7, 6, 7, 8)),
    ]


def test_recovery_on_one_line_separated_by_semicolons() -> None:
    assert problems("a -> @ ; b -> ; c ? ; d -> e") == [
        ("E011", "unexpected character `@` after `->`", (1, 6, 1, 7)),
        ("E010", "expected a node name after `->`, found `;`", (1, 15, 1, 16)),
        ("E010", "expected an expression or `not` after `?`, found `;`", (1, 21, 1, 22)),
    ]


def test_recovery_skips_a_whole_statement_over_continued_lines() -> None:
    source = "a ->\n  b ->\n  ->\n  c\nnode = f\nd -> e\n"
    assert problems(source) == [
        ("E010", "expected a node name after `->`, found `->`", (3, 3, 3, 5)),
        ("E010", "expected a name after `node`, found `=`", (5, 6, 5, 7)),
    ]


def test_an_error_at_the_end_after_other_errors_is_reported_once() -> None:
    assert problems("x\ne -> f ->\n") == [
        ("E010", "expected `->` or `?` after `x`, found the end of the line", (1, 2, 1, 3)),
        ("E010", "expected a node name after `->`, found the end of the text", (2, 10, 2, 11)),
    ]


def test_a_lone_carriage_return_is_reported_once() -> None:
    assert problems("\r") == [("E011", "unexpected character `\\r`", (1, 1, 1, 2))]


def test_recovery_gives_up_after_fifty_errors() -> None:
    found = problems("a -> ;\n" * 60)
    assert len(found) == 51
    assert found[:2] == [
        ("E010", "expected a node name after `->`, found `;`", (1, 6, 1, 7)),
        ("E010", "expected a node name after `->`, found `;`", (2, 6, 2, 7)),
    ]
    assert found[-2:] == [
        ("E010", "expected a node name after `->`, found `;`", (50, 6, 50, 7)),
        ("E010", "too many syntax errors; stopped after 50", (61, 1, 61, 2)),
    ]


def test_lines_ending_in_arrows_are_one_statement_until_the_end() -> None:
    assert problems("a ->\n" * 60) == [
        ("E010", "expected a node name after `->`, found the end of the text", (60, 5, 60, 6))
    ]


def test_spaces_before_a_bad_character_cost_no_backtracking() -> None:
    # A run of spaces before an unexpected character or the end once took exponential time.
    spaces = " \t" * 50_000
    assert problems(f"a -> b{spaces}@") == [
        ("E011", "unexpected character `@` after `b`", (1, 100_007, 1, 100_008))
    ]
    assert parse(" " * 100_000) == parse("")


# ------------------------------------------------------- no Lark internals

VALID = (
    "flow demo\n"
    "set max_steps = 60\n"
    'node refine = refine_code(max_fixes = 10, opts = {"a": [1, -2.5, true, null]})\n'
    "node check = check_style(\n  rules = [\n    'a',\n  ],  # comment\n)\n"
    "start -> analyze\n"
    "analyze -> style -> score\n"
    "score ? score < 80 and default(attempts, 0) < 3 -> refine :\n"
    '  issues[-1]["k"].line not in [1, 2] or -x % 2 == 1 -> end\n'
    "  : end\n"
)
VOCABULARY = [
    "flow", "set", "node", "start", "end", "and", "or", "not", "in", "true", "false", "null",
    "->", "?", ":", ";", "=", ",", ".", "(", ")", "[", "]", "{", "}", "==", "!=", "<", "<=",
    ">", ">=", "+", "-", "*", "/", "%", "1", "2.5", '"s"', "'", '"', "\n", "#", "@", "!", "\\",
    "x",
]  # fmt: skip
_TERMINALS = {terminal.name for terminal in lark_parser().terminals}


def leaks(message: str) -> list[str]:
    """Words of Lark's vocabulary in a message, outside the text it quotes in backticks."""
    unquoted = re.sub(r"`[^`]*`", "", message)
    found = set(re.findall(r"__ANON\w*|\$END|Token\(|Tree\(", unquoted))
    found |= set(re.findall(r"\w+", unquoted)) & _TERMINALS
    return sorted(found)


def _broken_texts() -> list[str]:
    """Every one-token deletion, and every insertion of a vocabulary word between tokens."""
    pieces = re.findall(r"->|[=!<>]=|\s+|\w+|\"[^\"]*\"|.", VALID)
    texts = ["".join(pieces[:i] + pieces[i + 1 :]) for i in range(len(pieces))]
    for i in range(0, len(pieces) + 1, 3):
        texts += ["".join([*pieces[:i], f" {word} ", *pieces[i:]]) for word in VOCABULARY]
    return texts


def test_the_leak_check_finds_lark_names() -> None:
    assert leaks("expected __ANON_0 or RPAR, found $END") == ["$END", "END", "RPAR", "__ANON_0"]
    assert leaks("expected a new line after _NL, found Token('X', 'y')") == ["Token(", "_NL"]
    assert leaks("expected `RPAR` after `_NL`") == []


def test_messages_never_show_lark_internals() -> None:
    texts = _broken_texts()
    seen = 0
    for text in texts:
        try:
            parse(text)
        except FlowError as exc:
            for diagnostic in exc.diagnostics:
                seen += 1
                assert not leaks(diagnostic.message), (text, diagnostic.message)
                assert not leaks(diagnostic.help or ""), (text, diagnostic.help)
    assert seen > len(texts) // 2  # most of these texts are broken


# ------------------------------------------- resuming is re-parsing, only faster

#: Statements, good and broken, that texts with several errors are made of.
STATEMENTS = [
    "a -> b", "a -> -> b", "a ->", "x ? y < 1 -> a : b", "x ? y < -> a : b", "x ? a -> b",
    "node n = t(k = 1) with timeout = 5", "node = t", "node end = t", "set s = [1,",
    'set s = {"k": 1, "k": 2}', 'h ? "\\q" == y -> i : j', "f @ g", "\"open", "# note",
    "a -> b ?", "c ->\n  d", "", "  ", "\x00", "\r", "flow f", "start -> a", "k -> l # end",
    "node m = t(\n  k = 1,\n  j = [\n 2]\n)", "node m = t(k = 1\n  j = 2)", "x ? y -> a\n  : b",
    "set s = [1\n  2]", "x ? y -> a\n  # c\n  : -> b", ")", "  : x", "set s = {\n", "// note: (",
]  # fmt: skip


def reparsed_from_the_start(text: str) -> tuple[ast.Flow | None, list[Diagnostic]]:
    """Recovery as it was: after each error, blank its statement and parse the whole text again."""
    end = parser._end_span(text)
    diagnostics: list[Diagnostic] = []
    for _ in range(MAX_SYNTAX_ERRORS):
        parser._builder.problems = []
        interactive = parser._parser().parse_interactive(text)
        good: Token | None = None
        current: Token | None = None
        statement_start = 0
        try:
            for token in interactive.iter_parse():
                if current is not None:
                    good, statement_start = parser._accepted(current, good, statement_start)
                current = token
            flow: ast.Flow = interactive.feed_eof()  # type: ignore[no-untyped-call]
            return flow, diagnostics + parser._builder.problems
        except UnexpectedInput as exc:
            if current is not None and getattr(exc, "token", None) is not current:
                good, statement_start = parser._accepted(current, good, statement_start)
            diagnostics.append(syntax_diagnostic(exc, good, text, end))
            position = parser._error_offset(exc, len(text))
            text = parser._blank(
                text,
                min(statement_start, position),
                parser._statement_end(text, position, statement_start),
            )
    stop = error("E010", f"too many syntax errors; stopped after {MAX_SYNTAX_ERRORS}", end)
    return None, [*diagnostics, stop, *parser._builder.problems]


def resumed(text: str) -> tuple[ast.Flow | None, list[Diagnostic]]:
    """Recovery as it is: each pass resumes at the last statement boundary."""
    flow, diagnostics = parser._parse_with_recovery(text)
    return flow, diagnostics + parser._builder.problems


def assert_resuming_is_reparsing(text: str) -> None:
    with parser._lock:
        assert resumed(text) == reparsed_from_the_start(text), text


def test_resuming_finds_what_reparsing_from_the_start_finds() -> None:
    for text in _broken_texts():
        assert_resuming_is_reparsing(text)


@given(
    st.lists(
        st.tuples(st.sampled_from(STATEMENTS), st.sampled_from(["\n", ";", " ; ", "\n\n  "])),
        max_size=14,
    )
)
def test_resuming_finds_what_reparsing_finds_in_texts_with_many_errors(
    statements: list[tuple[str, str]],
) -> None:
    assert_resuming_is_reparsing("".join(s + sep for s, sep in statements))


def test_resuming_handles_sixty_errors_like_reparsing() -> None:
    assert_resuming_is_reparsing("a -> b\nx ? y < -> a : b\nnode end = t\n" * 60)
