"""Lark's parse exceptions -> diagnostics in words a person understands.

Never shows Lark's internal names: every terminal has a description here, and the
expected-token sets of the parser states are summarised ("a node name", "an operator").
"""

from __future__ import annotations

from copy import copy

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from flowc.dsl import syntax
from flowc.dsl.diagnostics import Diagnostic, Span, error
from flowc.dsl.hints import character_hint, end_hint, token_hint
from flowc.dsl.literals import number_problem
from flowc.dsl.scan import QUOTES, scan_string
from flowc.dsl.syntax import COMPARISON_TERMINALS, OPERATOR_TERMINALS, SHOWN

_SHOWN = SHOWN
_OPERATORS = OPERATOR_TERMINALS
_EXPRESSION_START = syntax.EXPRESSION_START
_VALUE_START = syntax.VALUE_START
_STATEMENT_START = syntax.STATEMENT_START
_NODE_NAME = syntax.NODE_NAME
_COMPARISONS = COMPARISON_TERMINALS
_SEPARATORS = frozenset(["_NL", "SEMICOLON", "$END"])
#: After these, a new line continues the statement instead of ending it.
CONTINUATIONS = frozenset(["ARROW", "QMARK", "COLON", "LPAR", "LSQB", "LBRACE", "COMMA"])


def describe_expected(expected: set[str]) -> str:
    """Summarise a parser state's expected terminals as a phrase."""
    wanted = set(expected)
    phrases: list[str] = []
    if wanted >= _STATEMENT_START:
        phrases.append("a statement")
        wanted -= _STATEMENT_START | _NODE_NAME
    if wanted >= _EXPRESSION_START:
        phrases.append("an expression")
        wanted -= _EXPRESSION_START | {"FLOAT", "MINUS", "LSQB", "TRUE", "FALSE", "NULL", "STATE"}
    if wanted >= _VALUE_START:
        phrases.append("a value")
        wanted -= _VALUE_START | {"FLOAT", "MINUS", "TRUE", "FALSE", "NULL"}
    if expected >= _NODE_NAME and wanted & _NODE_NAME:  # an expression may have taken NAME
        phrases.append("a node name")
        wanted -= _NODE_NAME | {"LSQB"}  # `[`: parallel branches, a rarer next step
    if len(wanted & _OPERATORS) >= 3:
        phrases.append("an operator")
        wanted -= _OPERATORS | {"DOT", "LSQB"}
    # A new line alone is expected only where it continues the statement: not worth naming.
    ends = wanted & {"SEMICOLON", "$END"}
    wanted -= _SEPARATORS
    if "INT" in wanted:
        wanted.discard("FLOAT")
    phrases.extend(sorted(_SHOWN.get(name, f"`{name}`") for name in wanted))
    if ends and "a statement" not in phrases:
        phrases.append("the end of the statement")
    if not phrases:
        return "something else"
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " or " + phrases[-1]


def describe_token(token: Token) -> str:
    """How a found token is named in a message."""
    if token.type == "$END":
        return "the end of the text"
    if token.type == "_NL":
        return "the end of the line"
    if token.type in ("NAME", "INT", "FLOAT", "STRING"):
        return f"`{token.value}`"
    return _SHOWN.get(token.type, f"`{token.value}`")


def syntax_diagnostic(
    exc: UnexpectedInput, previous: Token | None, text: str, end: Span
) -> Diagnostic:
    """The diagnostic for one Lark parse exception; `previous` is the last good token."""
    after = ""
    if previous is not None and previous.type not in _SEPARATORS:
        after = f" after `{previous.value}`"
    if isinstance(exc, UnexpectedCharacters):
        line, column, position = exc.line, exc.column, exc.pos_in_stream or 0
        char = text[position] if position < len(text) else ""
        span = Span(line, column, line, column + 1)
        number = _number_diagnostic(text, position, line, column)
        if number is not None:
            return number
        if char in QUOTES:
            stray = _control_character(text, position)
            if stray is not None:
                span = Span(line, column + stray - position, line, column + stray - position + 1)
                return error(
                    "E011",
                    f"unexpected character `{_shown(text[stray])}` in a string",
                    span,
                    help=f"write it as the escape `\\u{ord(text[stray]):04x}`",
                )
            return error(
                "E012", "unterminated string", span, help=f"close it with {char} on the same line"
            )
        hint = character_hint(text, position) if char else None
        if hint is not None:
            span = Span(line, column, line, column + hint.width)
            return error("E011", f"unexpected {hint.found}{after}", span, help=hint.help)
        return error("E011", f"unexpected character `{_shown(char)}`{after}", span)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        span = Span(token.line, token.column, token.end_line, token.end_column)
        if token.type == "_NL":  # point at the line's end, not the whole run of blank lines
            span = Span(token.line, token.column, token.line, token.column + 1)
        acceptable = _acceptable(exc)
        number = None
        if token.type == "DOT" and token.start_pos is not None:  # `.5`
            number = _number_diagnostic(text, token.start_pos, token.line, token.column)
        if number is not None:
            return number
        if token.type in _COMPARISONS and "PLUS" in acceptable:  # `a < b < c`
            return error(
                "E010",
                f"comparisons do not chain: found {describe_token(token)}{after}",
                span,
                help="join two comparisons with `and`, as in `a < b and b < c`",
            )
        expected = f"expected {describe_expected(acceptable)}{after}"
        hint = token_hint(token, previous, acceptable, text)
        if hint is None:
            return error("E010", f"{expected}, found {describe_token(token)}", span)
        if hint.found is not None:
            span = Span(token.line, token.column, token.line, token.column + hint.width)
        found = hint.found or describe_token(token)
        return error("E010", f"{expected}, found {found}", span, help=hint.help)
    if after and previous is not None and previous.end_line is not None:
        # Right after the last good token, even when new lines or comments follow it.
        line, column = previous.end_line, previous.end_column or 1
        end = Span(line, column, line, column + 1)
    acceptable = _acceptable(exc)
    wanted = describe_expected(acceptable)
    message = f"expected {wanted}{after}, found the end of the text"
    return error("E010", message, end, help=end_hint(acceptable, previous))


def _number_diagnostic(text: str, position: int, line: int, column: int) -> Diagnostic | None:
    """E013 for a number the grammar refuses (`.5`, `5.`, `007`, `1andy`) at `position`."""
    found = number_problem(text, position)
    if found is None:
        return None
    problem, fix = found
    span = Span(line, column, line, column + problem.length)
    return error("E013", problem.message, span, help=fix)


def _shown(char: str) -> str:
    """A character as a message shows it: control characters and spaces escaped."""
    return repr(char)[1:-1] if not char.isprintable() or char.isspace() else char


def _control_character(text: str, quote: int) -> int | None:
    """Where the string opened at `quote` holds a control character before it ends, if it does."""
    return scan_string(text, quote).control


def _acceptable(exc: UnexpectedInput) -> set[str]:
    """Every terminal the parser would take where `exc` happened.

    Tried one by one on a copy of the parser state, without callbacks: the parse table
    alone over-approximates (LALR merges lookaheads), and the contextual lexer's own
    list leaves out keywords.
    """
    state = getattr(exc, "state", None)
    if state is None:
        interactive = getattr(exc, "interactive_parser", None)
        state = interactive.parser_state if interactive is not None else None
    if state is None:
        return set(getattr(exc, "expected", None) or ())
    quiet = copy(state.parse_conf)
    quiet.callbacks = {}
    accepted: set[str] = set()
    for name in state.parse_conf.states[state.position]:
        if not name.isupper():
            continue
        trial = state.copy(deepcopy_values=False)
        trial.parse_conf = quiet
        try:
            trial.feed_token(Token(name, ""), is_end=name == "$END")
        except UnexpectedInput:
            continue
        accepted.add(name)
    return accepted
