"""FlowLexer: the tokens of a text, their positions, keywords by context, and its errors.

Each test builds its own parser, so each builds its own lexer from the grammar's terminals.
"""

from __future__ import annotations

import re
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from flowc.dsl import format
from flowc.dsl.formatter import format_expr
from flowc.dsl.lexer import FlowLexer
from flowc.dsl.parser import grammar_text, lark_parser
from flowc.dsl.scan import QUOTES, comment_end, comments, scan_string
from flowc.dsl.syntax import TOKENS
from tests.dsl import strategies

#: A token as these tests compare it: type, value, then Lark's positions (`start_pos`,
#: `line`, `column`, `end_line`, `end_column`, `end_pos`), lines and columns 1-based.
Positioned = tuple[str, str, int | None, int | None, int | None, int | None, int | None, int | None]


def positioned(text: str, parser: Lark | None = None) -> list[Positioned]:
    """Every token of `text`, lexed as the parser asks for them."""
    interactive = (parser or lark_parser()).parse_interactive(text)
    return [
        (t.type, t.value, t.start_pos, t.line, t.column, t.end_line, t.end_column, t.end_pos)
        for t in interactive.iter_parse()
    ]


def kinds(text: str, parser: Lark | None = None) -> list[tuple[str, str]]:
    """Every token of `text` as (type, value)."""
    return [(kind, value) for kind, value, *_ in positioned(text, parser)]


def test_tokens_and_their_positions() -> None:
    assert positioned("a -> b") == [
        ("NAME", "a", 0, 1, 1, 1, 2, 1),
        ("ARROW", "->", 2, 1, 3, 1, 5, 4),
        ("NAME", "b", 5, 1, 6, 1, 7, 6),
    ]


def test_a_comment_and_blank_lines_are_one_newline_token() -> None:
    # The token runs from `#` to the indentation of the next line that holds a token.
    assert positioned("a -> b # note\n\n  c -> d") == [
        ("NAME", "a", 0, 1, 1, 1, 2, 1),
        ("ARROW", "->", 2, 1, 3, 1, 5, 4),
        ("NAME", "b", 5, 1, 6, 1, 7, 6),
        ("_NL", "# note\n\n  ", 7, 1, 8, 3, 3, 17),
        ("NAME", "c", 17, 3, 3, 3, 4, 18),
        ("ARROW", "->", 19, 3, 5, 3, 7, 21),
        ("NAME", "d", 22, 3, 8, 3, 9, 23),
    ]


def test_a_comment_at_the_very_end() -> None:
    assert positioned("a -> b # note")[-1] == ("_NL", "# note", 7, 1, 8, 1, 14, 13)


def test_crlf_line_ends() -> None:
    assert positioned("a -> b\r\nc -> end") == [
        ("NAME", "a", 0, 1, 1, 1, 2, 1),
        ("ARROW", "->", 2, 1, 3, 1, 5, 4),
        ("NAME", "b", 5, 1, 6, 1, 7, 6),
        ("_NL", "\r\n", 6, 1, 7, 2, 1, 8),
        ("NAME", "c", 8, 2, 1, 2, 2, 9),
        ("ARROW", "->", 10, 2, 3, 2, 5, 12),
        ("END", "end", 13, 2, 6, 2, 9, 16),
    ]


def test_a_new_line_before_a_closer_is_no_token_but_its_lines_are_counted() -> None:
    # `_NL_CONTINUED` (a new line before `)`, `]`, `}` or `:`) is ignored like spaces.
    text = "a ? x -> b  # c\n\n  : d\ne -> f"
    assert positioned(text) == [
        ("NAME", "a", 0, 1, 1, 1, 2, 1),
        ("QMARK", "?", 2, 1, 3, 1, 4, 3),
        ("NAME", "x", 4, 1, 5, 1, 6, 5),
        ("ARROW", "->", 6, 1, 7, 1, 9, 8),
        ("NAME", "b", 9, 1, 10, 1, 11, 10),
        ("COLON", ":", 19, 3, 3, 3, 4, 20),
        ("NAME", "d", 21, 3, 5, 3, 6, 22),
        ("_NL", "\n", 22, 3, 6, 4, 1, 23),
        ("NAME", "e", 23, 4, 1, 4, 2, 24),
        ("ARROW", "->", 25, 4, 3, 4, 5, 27),
        ("NAME", "f", 28, 4, 6, 4, 7, 29),
    ]
    assert positioned(text) == positioned(text, _plain_lark())


def test_spaces_at_the_end_are_no_token() -> None:
    assert kinds("a -> b  \t") == [("NAME", "a"), ("ARROW", "->"), ("NAME", "b")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The longest operator wins: `<=` is one token, not `<` then `=`.
        ("x ? a <= 1 -> y : end",
         [("NAME", "x"), ("QMARK", "?"), ("NAME", "a"), ("LE", "<="), ("INT", "1"),
          ("ARROW", "->"), ("NAME", "y"), ("COLON", ":"), ("END", "end")]),
        ("x ? a != b -> y : end",
         [("NAME", "x"), ("QMARK", "?"), ("NAME", "a"), ("NE", "!="), ("NAME", "b"),
          ("ARROW", "->"), ("NAME", "y"), ("COLON", ":"), ("END", "end")]),
        # A float is one token, not an integer then a fraction.
        ("x ? a < 1.5 + 1e3 - 2 -> y : end",
         [("NAME", "x"), ("QMARK", "?"), ("NAME", "a"), ("LT", "<"), ("FLOAT", "1.5"),
          ("PLUS", "+"), ("FLOAT", "1e3"), ("MINUS", "-"), ("INT", "2"),
          ("ARROW", "->"), ("NAME", "y"), ("COLON", ":"), ("END", "end")]),
    ],
)  # fmt: skip
def test_the_longest_token_is_taken(text: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Where the parser takes the keyword, the word is the keyword.
        ("start -> a", [("START", "start"), ("ARROW", "->"), ("NAME", "a")]),
        ("flow f", [("FLOW", "flow"), ("NAME", "f")]),
        ("x ? not a in b and true -> y : end",
         [("NAME", "x"), ("QMARK", "?"), ("NOT", "not"), ("NAME", "a"), ("IN", "in"),
          ("NAME", "b"), ("AND", "and"), ("TRUE", "true"), ("ARROW", "->"), ("NAME", "y"),
          ("COLON", ":"), ("END", "end")]),
        ("x ? a not in b -> y : end",
         [("NAME", "x"), ("QMARK", "?"), ("NAME", "a"), ("NOT", "not"), ("IN", "in"),
          ("NAME", "b"), ("ARROW", "->"), ("NAME", "y"), ("COLON", ":"), ("END", "end")]),
        # Where it takes a name but not the keyword, the word is a name.
        ("node start = t", [("NODE", "node"), ("NAME", "start"), ("EQUALS", "="), ("NAME", "t")]),
        ("x ? a.end -> y : end",
         [("NAME", "x"), ("QMARK", "?"), ("NAME", "a"), ("DOT", "."), ("NAME", "end"),
          ("ARROW", "->"), ("NAME", "y"), ("COLON", ":"), ("END", "end")]),
        # A keyword is a whole word.
        ("endless -> notable", [("NAME", "endless"), ("ARROW", "->"), ("NAME", "notable")]),
    ],
)  # fmt: skip
def test_keywords_by_context(text: str, expected: list[tuple[str, str]]) -> None:
    assert kinds(text) == expected


def test_a_keyword_where_neither_it_nor_a_name_fits_stays_a_keyword() -> None:
    # After `flow f` only a statement's end fits: the parser is shown `end` as the keyword.
    with pytest.raises(UnexpectedToken) as caught:
        kinds("flow f end")
    assert (caught.value.token.type, caught.value.token.value) == ("END", "end")


@pytest.mark.parametrize(
    ("text", "line", "column", "position"),
    [
        ("a -> @", 1, 6, 5),
        ("a -> b  @", 1, 9, 8),
        ("a -> b\n  @", 2, 3, 9),
    ],
)
def test_a_character_no_token_starts_with(text: str, line: int, column: int, position: int) -> None:
    with pytest.raises(UnexpectedCharacters) as caught:
        kinds(text)
    assert (caught.value.line, caught.value.column) == (line, column)
    assert getattr(caught.value, "pos_in_stream", None) == position


def test_an_unexpected_character_tells_lark_what_the_parser_takes_there() -> None:
    # As Lark's own lexer does: the terminals the parser accepts, and the parser's state.
    interactive = lark_parser().parse_interactive("a -> @")
    with pytest.raises(UnexpectedCharacters) as caught:
        list(interactive.iter_parse())
    assert caught.value.allowed == {"NAME", "START", "END", "LSQB", "_NL"}
    assert caught.value.state is interactive.parser_state


#: Terminal priorities and keywords, as any Lark grammar may have them.
PRIORITIES = r"""
start: (NAME | KEY | IF)+
IF.2: "if"
KEY.2: /k[0-9]/
NAME: /[a-z][a-z0-9]*/
%ignore " "
%ignore "\t"
"""


def test_a_terminal_of_higher_priority_is_tried_first() -> None:
    parser = Lark(PRIORITIES, parser="lalr", lexer=FlowLexer)
    # `k1` is a KEY (priority 2) though NAME matches it too; a keyword is a whole word
    # whatever its priority: `iffy` is a NAME, not `if` then `fy`.  Each ignored terminal
    # separates tokens.
    assert kinds("k1 kx\tiffy \t if", parser) == [
        ("KEY", "k1"),
        ("NAME", "kx"),
        ("NAME", "iffy"),
        ("IF", "if"),
    ]


# ------------------------------------------------- the grammar alone accepts the same texts

#: Pieces of text to glue together: every fixed token, names that start with a keyword,
#: numbers JSON allows and forms it does not, strings, comments and a stray character.
_PIECES = sorted(
    {*TOKENS.values(), "andy", "ends", "state_1", "innit", "nota", "withx", "a", "x", "start"}
    | {"0", "1", "42", "007", "1.5", ".5", "5.", "1e3", "1.e5", "1e", "2E-3", "0.0"}
    | {'"s"', "'t'", '"#"', '"\\q"', '"open', "# c", "@", "\t"}
)
_GLUE = st.sampled_from(["", " ", "\n", " \\\n"])


def _accepts(parser: Lark, text: str) -> bool:
    try:
        parser.parse(text)
    except UnexpectedInput:
        return False
    return True


@cache
def _project() -> Lark:
    """The project's parser: the grammar with FlowLexer."""
    return lark_parser()


@cache
def _plain_lark() -> Lark:
    """The grammar read by Lark alone: its own contextual lexer, no FlowLexer."""
    return Lark(grammar_text(), parser="lalr", lexer="contextual", maybe_placeholders=False)


@st.composite
def _soups(draw: st.DrawFn) -> str:
    """Pieces glued together, alone or where a condition or a value goes."""
    pieces = draw(st.lists(st.sampled_from(_PIECES), max_size=10))
    soup = "".join(piece + draw(_GLUE) for piece in pieces)
    return draw(
        st.sampled_from(["{}", "a ? {} -> b : c", "set x = {}", "a ? x{}y -> b : c"])
    ).format(soup)


_CONDITIONS = strategies.conditions.map(lambda c: f"a ? {format_expr(c)} -> b : c\n")


@st.composite
def _near_flows(draw: st.DrawFn) -> str:
    """A valid flow's text with a few words replaced, put in, or glued to their neighbours."""
    text = draw(_CONDITIONS | strategies.flows.map(format))
    words = re.findall(r"\s+|\S+", text)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        spaces = [at for at, word in enumerate(words) if word.isspace()]
        change = draw(st.sampled_from(["glue", "replace", "insert"]))
        if change == "glue" and spaces:
            words[draw(st.sampled_from(spaces))] = ""
        elif change == "replace" and words:
            words[draw(st.integers(0, len(words) - 1))] = draw(st.sampled_from(_PIECES))
        else:
            at = draw(st.integers(0, len(words)))
            words.insert(at, draw(st.sampled_from(_PIECES)) + draw(_GLUE))
    return "".join(words)


_PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@_PROPERTY
@given(_soups() | _near_flows())
def test_the_grammar_read_by_lark_alone_accepts_what_the_project_accepts(text: str) -> None:
    assert _accepts(_project(), text) == _accepts(_plain_lark(), text), repr(text)


@pytest.mark.parametrize(
    "text",
    ["a ? x == 1andy -> b : c", "a ? x andy -> b : c", "a ? x not iny -> b : c",
     "node a = t withx = 1", "a ? 007 > x -> b : c", "a ? .5 > x -> b : c", "set x = 5."],
)  # fmt: skip
def test_neither_reads_a_keyword_or_a_number_out_of_a_longer_word(text: str) -> None:
    assert not _accepts(_project(), text)
    assert not _accepts(_plain_lark(), text)


# -------------------------------------------- the scanner of strings and comments agrees


def _terminal(name: str) -> re.Pattern[str]:
    return re.compile(
        next(t.pattern.to_regexp() for t in _plain_lark().terminals if t.name == name)
    )


@_PROPERTY
@given(st.sampled_from(QUOTES), st.text(alphabet="\"'\\a #\t\n\r\x01\x7f", max_size=12))
def test_the_scanner_reads_a_string_as_the_grammar_does(quote: str, rest: str) -> None:
    text = quote + rest
    scan = scan_string(text, 0)
    grammar = _terminal("STRING").match(text)
    if scan.closed and scan.control is None:
        assert grammar is not None and grammar.end() == scan.end
    else:
        assert grammar is None


@_PROPERTY
@given(st.text(alphabet="\"'a #\t\\", max_size=12), st.sampled_from(["", "\n", "\r\n", "\nx"]))
def test_the_scanner_reads_a_comment_as_the_grammar_does(body: str, after: str) -> None:
    text = "#" + body + after
    grammar = _terminal("COMMENT").match(text)
    assert grammar is not None and grammar.end() == comment_end(text, 0)
    assert list(comments(text)) == [(0, comment_end(text, 0))]
