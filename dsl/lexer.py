"""Source text -> Lark tokens, one compiled-regex match per token.

A stand-in for Lark's contextual lexer with the same terminals, taken from the grammar
itself, so `grammars/flow.lark` stays the one specification.  It exists for speed: Lark's
lexer matches whitespace separately and does per-token bookkeeping in Python, which was
half of the parse time.  Keywords (`keywords_of`) are whole words read as a NAME and looked
up, and follow the contextual lexer's rule: where the parser takes a name but not the
keyword (`node start`, `a.end`), the word is a name.  tests/dsl/test_lexer.py checks that
Lark's own lexer, given the grammar alone, accepts exactly the texts this one does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from lark import Token
from lark.exceptions import UnexpectedCharacters
from lark.lexer import Lexer, LexerState, TerminalDef
from lark.utils import TextSlice

#: Terminals the grammar ignores (`%ignore`) besides spaces and tabs; `_NL` covers comments.
_NEWLINE = "_NL"
_NAME = "NAME"


def _scan_order(terminal: TerminalDef) -> tuple[int, int, int, str]:
    # The order Lark's own lexer tries terminals in: longest possible match first.
    pattern = terminal.pattern
    return (-terminal.priority, -pattern.max_width, -len(pattern.value), terminal.name)


def keywords_of(terminals: Iterable[TerminalDef]) -> dict[str, str]:
    """The grammar's keywords, word -> terminal: each terminal named after a word it matches.

    `AND: /and(?![A-Za-z0-9_])/` is the keyword `and`; NAME matches every keyword too.
    """
    terminals = list(terminals)
    name = re.compile(next(t.pattern.to_regexp() for t in terminals if t.name == _NAME))
    return {
        t.name.lower(): t.name
        for t in terminals
        if t.name != _NAME
        and name.fullmatch(t.name.lower())
        and re.fullmatch(t.pattern.to_regexp(), t.name.lower())
    }


def _skip_lines(text: str, start: int, end: int, line: int, line_start: int) -> tuple[int, int]:
    """The line and its start after text[start:end], ignored text that may hold new lines.

    `_NL_CONTINUED`, a new line before `)`, `]`, `}` or `:`, is ignored like spaces.
    """
    last = text.rfind("\n", start, end)
    if last < 0:
        return line, line_start
    return line + text.count("\n", start, end), last + 1


class FlowLexer(Lexer):
    """Tokens for the Flow grammar (Lark's custom-lexer interface, version 2)."""

    __future_interface__ = 2

    def __init__(self, lexer_conf: Any) -> None:
        terminals: list[TerminalDef] = list(lexer_conf.terminals)
        ignored = set(lexer_conf.ignore)
        # Keywords are looked up after a NAME match, not scanned.
        self.keywords: dict[str, str] = keywords_of(terminals)
        scanned = sorted(
            (
                t
                for t in terminals
                if t.name not in ignored and t.name not in self.keywords.values()
            ),
            key=_scan_order,
        )
        # Plain spaces first: they come before most tokens, a continued line rarely.
        spaces = "|".join(
            t.pattern.to_regexp()
            for t in sorted(terminals, key=lambda t: t.name.startswith("_NL"))
            if t.name in ignored and t.name != "COMMENT"
        )
        alternatives = "|".join(f"(?P<{t.name}>{t.pattern.to_regexp()})" for t in scanned)
        # The spaces are matched atomically (a lookahead, then a back-reference to it): when no
        # token follows them, `(?:[\t \f]+)*` would otherwise backtrack exponentially.
        self.scanner = re.compile(f"(?=(?P<_spaces>(?:{spaces})*))(?P=_spaces)(?:{alternatives})")
        self.spaces = re.compile(f"(?:{spaces})*")
        self.group_names = {index: name for name, index in self.scanner.groupindex.items()}

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        """Yield the tokens of the text, consulting the parser only about keywords."""
        text = lexer_state.text
        if isinstance(text, TextSlice):
            text = text.text
        assert isinstance(text, str)
        match = self.scanner.match
        keywords = self.keywords
        groups = self.group_names
        states = parser_state.parse_conf.states
        position, size = 0, len(text)
        line, line_start = 1, 0
        while True:
            found = match(text, position)
            if found is None:
                spaces = self.spaces.match(text, position)
                assert spaces is not None  # `(?:...)*` always matches, if only the empty text
                line, line_start = _skip_lines(text, position, spaces.end(), line, line_start)
                position = spaces.end()
                if position >= size:
                    return
                column = position - line_start + 1
                accepts = set(states[parser_state.position])
                raise UnexpectedCharacters(  # type: ignore[no-untyped-call]
                    text, position, line, column, allowed=accepts, state=parser_state
                )
            kind = groups[found.lastindex]  # type: ignore[index]
            start, end = found.span(kind)
            if start != position:  # spaces, or an ignored new line (`_NL_CONTINUED`)
                last = text.rfind("\n", position, start)
                if last >= 0:
                    line, line_start = line + text.count("\n", position, start), last + 1
            value = text[start:end]
            column = start - line_start + 1
            if kind == _NEWLINE:
                newlines = value.count("\n")
                if newlines:
                    last = start + value.rindex("\n")
                    token = Token(
                        kind, value, start, line, column, line + newlines, end - last, end
                    )
                    line, line_start = line + newlines, last + 1
                else:  # a comment at the very end of the text
                    token = Token(kind, value, start, line, column, line, column + len(value), end)
            else:
                if kind == "NAME" and value in keywords:
                    keyword = keywords[value]
                    accepted = states[parser_state.position]
                    if keyword in accepted or "NAME" not in accepted:
                        kind = keyword
                token = Token(kind, value, start, line, column, line, column + end - start, end)
            position = end
            yield token
