"""Source text -> AST: the Lark facade, with limits and recovery from syntax errors.

The fast path hands the text to Lark with the AST builder as its inline transformer.  When
that fails, the slow path reports the error, blanks out the broken statement (keeping every
line and column where it was) and parses again, so independent errors all show in one run.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedInput
from lark.parsers.lalr_interactive_parser import InteractiveParser
from lark.parsers.lalr_parser_state import ParserState

from flowc.dsl import ast
from flowc.dsl.builder import AstBuilder
from flowc.dsl.comments import find_comments
from flowc.dsl.diagnostics import WHOLE_TEXT, Diagnostic, FlowError, Span, error
from flowc.dsl.lexer import FlowLexer
from flowc.dsl.limits import MAX_SOURCE_BYTES, MAX_SYNTAX_ERRORS, RECOVERY_BUDGET
from flowc.dsl.scan import COMMENT_START, QUOTES, comment_end, scan_string
from flowc.dsl.syntax import STATEMENT_KEYWORDS
from flowc.dsl.syntax_errors import CONTINUATIONS, syntax_diagnostic

_BOM = "\ufeff"
_CONTINUED_AFTER = frozenset(["->", "?", ":", "(", "[", "{", ","])
_CONTINUED_BEFORE = frozenset([")", "]", "}", ":"])
#: The first character of code after a line end: blank lines and comment lines skipped.
_NEXT_CODE = re.compile(r"(?:[\t \f]*(?:#[^\n]*)?\r?\n)*[\t \f]*(.)")
#: A line that starts a statement: a keyword, or a node name before `->` or `?`.
_STATEMENT_START = re.compile(
    "(?:" + "|".join(STATEMENT_KEYWORDS) + r")\b|[A-Za-z_]\w*[\t \f]*(?:->|\?)"
)
_lock = threading.Lock()
_builder = AstBuilder()
_lark: Lark | None = None


def grammar_text() -> str:
    """The text of `grammars/flow.lark`, the language's specification."""
    return resources.files("flowc.grammars").joinpath("flow.lark").read_text(encoding="utf-8")


def lark_parser(transformer: AstBuilder | None = None) -> Lark:
    """A Lark LALR parser for the Flow grammar, with `FlowLexer` (tables cached on disk)."""
    return Lark(
        grammar_text(),
        parser="lalr",
        lexer=FlowLexer,
        transformer=transformer,
        maybe_placeholders=False,
        cache=True,
    )


def _parser() -> Lark:
    global _lark
    if _lark is None:
        _lark = lark_parser(_builder)
    return _lark


def parse(text: str, filename: str | None = None) -> ast.Flow:
    """Parse Flow source text into an AST; raise `FlowError` with every problem found.

    Warnings alone raise nothing: they come back in the AST's `warnings`.
    """
    problems = check_text(text)
    if problems:
        raise FlowError(problems)
    if text.startswith(_BOM):
        text = text[1:]
    with _lock:
        _builder.reset()
        try:
            flow: ast.Flow | None = _parser().parse(text)  # type: ignore[assignment]
            syntax: list[Diagnostic] = []
        except UnexpectedInput:
            flow, syntax = _parse_with_recovery(text)
        # The builder reports conditions and values nested deeper than the limits (E003).
        problems = syntax + _builder.problems
    if flow is None or any(problem.is_error for problem in problems):
        raise FlowError(problems)
    if problems:  # only warnings: the flow comes back with them
        flow = replace(flow, warnings=tuple(problems))
    if "#" in text:
        flow = replace(flow, comments=find_comments(text), lines=tuple(text.split("\n")))
    return flow


def check_text(text: str) -> list[Diagnostic]:
    """Problems with the text as a whole: too large, or characters UTF-8 cannot hold."""
    if len(text) > MAX_SOURCE_BYTES:  # every character is at least one byte
        return [_too_large(len(text.encode("utf-8", "surrogatepass")))]
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line = text.count("\n", 0, exc.start) + 1
        column = exc.start - (text.rfind("\n", 0, exc.start) + 1) + 1
        span = Span(line, column, line, column + 1)
        return [error("E002", "the text holds a lone surrogate, which UTF-8 cannot encode", span)]
    return [_too_large(size)] if size > MAX_SOURCE_BYTES else []


def _too_large(size: int) -> Diagnostic:
    return error(
        "E001",
        f"the text is {size:,} bytes; the limit is {MAX_SOURCE_BYTES:,} bytes",
        WHOLE_TEXT,
        help="split the flow into smaller files",
    )


# ------------------------------------------------------------------- recovery


@dataclass(slots=True)
class _Resume:
    """A statement boundary the parser reached: where the next pass of the recovery starts.

    `state` is the parser's state just after the separator (None at the start of the text),
    `good` the last token accepted there, `problems` how many builder problems came before.
    """

    offset: int = 0
    state: ParserState[Any] | None = None
    good: Token | None = None
    problems: int = 0


def _parse_with_recovery(text: str) -> tuple[ast.Flow | None, list[Diagnostic]]:
    """Parse, reporting each syntax error and blanking its statement, until the text parses.

    A pass resumes from the last statement boundary the previous one reached rather than
    from the start, so a text with many errors is parsed about once, not once per error.
    """
    diagnostics: list[Diagnostic] = []
    end = _end_span(text)
    resume = _Resume()
    budget = RECOVERY_BUDGET
    _builder.problems = []
    while len(diagnostics) < MAX_SYNTAX_ERRORS and budget > 0:
        interactive = _parser().parse_interactive(_masked(text, resume.offset))
        if resume.state is not None:
            state = resume.state.copy(deepcopy_values=False)
            state.lexer = interactive.parser_state.lexer
            interactive.parser_state = state
        del _builder.problems[resume.problems :]  # they came from the statement now blanked
        good, statement_start, parsed_from = resume.good, resume.offset, resume.offset
        current: Token | None = None  # iter_parse yields a token before feeding it
        try:
            for token in interactive.iter_parse():
                if current is not None:
                    good, statement_start, resume = _accept(
                        current, good, statement_start, resume, interactive
                    )
                current = token
            flow: ast.Flow = interactive.feed_eof()  # type: ignore[no-untyped-call]
            return flow, diagnostics
        except UnexpectedInput as exc:
            if current is not None and getattr(exc, "token", None) is not current:
                # The lexer failed, or the end came: `current` was accepted.
                good, statement_start, resume = _accept(
                    current, good, statement_start, resume, interactive
                )
            diagnostics.append(syntax_diagnostic(exc, good, text, end))
            position = _error_offset(exc, len(text))
            budget -= max(1, position - parsed_from)
            text = _blank(
                text,
                min(statement_start, position),
                _statement_end(text, position, statement_start),
            )
    count = len(diagnostics)
    diagnostics.append(error("E010", f"too many syntax errors; stopped after {count}", end))
    return None, diagnostics


def _accept(
    token: Token,
    good: Token | None,
    statement_start: int,
    resume: _Resume,
    interactive: InteractiveParser,
) -> tuple[Token, int, _Resume]:
    """`_accepted`, and a new resume point when `token` ended a statement."""
    good, start = _accepted(token, good, statement_start)
    if start != statement_start:
        state = interactive.parser_state.copy(deepcopy_values=False)
        resume = _Resume(start, state, good, len(_builder.problems))
    return good, start, resume


def _masked(text: str, offset: int) -> str:
    """`text` with everything before `offset` blank: only its line breaks, then spaces.

    Every position after `offset` keeps its line and column, and the lexer crosses the blank
    part in one match (one new-line token), so a resumed pass does not lex it again.
    """
    if offset == 0:
        return text
    newlines = text.count("\n", 0, offset)
    if not newlines:
        return " " * offset + text[offset:]
    last = text.rfind("\n", 0, offset)
    return " " * (last + 1 - newlines) + "\n" * newlines + " " * (offset - last - 1) + text[offset:]


def _accepted(token: Token, good: Token | None, statement_start: int) -> tuple[Token, int]:
    """The last good token and where the statement starts, once `token` is accepted.

    A new line after `->`, `?`, `:`, `(`, `[`, `{` or `,` continues the statement and leaves
    the last good token alone, so that a message still says what it follows.
    """
    if token.type == "_NL" and good is not None and good.type in CONTINUATIONS:
        return good, statement_start
    if token.type in ("_NL", "SEMICOLON"):
        return token, token.end_pos or 0
    return token, statement_start


def _error_offset(exc: UnexpectedInput, size: int) -> int:
    token = getattr(exc, "token", None)
    if token is not None and token.type == "$END":
        return size  # `feed_eof` places its `$END` token at offset 0
    if token is not None and token.start_pos is not None:
        return int(token.start_pos)
    position = getattr(exc, "pos_in_stream", None)
    return size if position is None else int(position)


def _statement_end(text: str, position: int, start: int | None = None) -> int:
    """Where the statement around `position`, which began at `start`, ends.

    That is the next `;`, or the next line end that does not continue the statement (see
    `_continued`); strings and comments are skipped.
    """
    n = len(text)
    i = position if start is None else min(start, position)
    last = ""
    depth = 0  # of brackets opened in the statement and not closed
    while i < n:
        ch = text[i]
        if ch in QUOTES:
            i, last = scan_string(text, i).end, ch
            continue
        if ch == COMMENT_START or text.startswith("//", i):  # `//`: no Flow, meant as `#`
            i = comment_end(text, i)
            continue
        depth += 1 if ch in "([{" else -1 if ch in ")]}" and depth else 0
        if ch in ";\n" and i >= position:
            # After a `;` too: what a line that starts with `)`, `]`, `}` or `:` closes is
            # this statement, or blanking the statement would join it to the one before.
            below = _continued(text, i, last, depth) if ch == "\n" else _continued(text, i, "", 0)
            if below is None:
                return i + 1
            if below > i:
                i, last = below, ""
                continue
        if not ch.isspace():
            last = "->" if ch == ">" and i > 0 and text[i - 1] == "-" else ch
        i += 1
    return n


def _continued(text: str, newline: int, last: str, depth: int) -> int | None:
    """Where the statement goes on if the `;` or line end at `newline` continues it, else None.

    As the grammar has it, a line end continues a statement after `->`, `?`, `:`, `(`, `[`,
    `{` and `,` (it goes on from the line end), and before a line that starts with `)`,
    `]`, `}` or `:`, blank lines and comment lines between (it goes on from that character).
    Inside brackets (`depth`), where a `,` may be missing, it goes on too unless the next
    line starts a statement of its own (`node`, `a -> b`).
    """
    if last in _CONTINUED_AFTER:
        return newline
    found = _NEXT_CODE.match(text, newline + 1)
    if found is None:
        return None
    if found.group(1) in _CONTINUED_BEFORE:
        return found.start(1)
    if depth and not _STATEMENT_START.match(text, found.start(1)):
        return found.start(1)
    return None


def _blank(text: str, start: int, end: int) -> str:
    r"""Replace text[start:end] with spaces, keeping line breaks so positions stay put.

    Only `\n` counts as a line break for positions; a lone `\r` is blanked like any other
    character, or an unexpected one would be reported again on every pass.
    """
    start = min(start, end)
    hole = "".join(c if c == "\n" else " " for c in text[start:end])
    return text[:start] + hole + text[end:]


def _end_span(text: str) -> Span:
    line = text.count("\n") + 1
    column = len(text) - (text.rfind("\n") + 1) + 1
    return Span(line, column, line, column + 1)
