"""The compiler never raises anything but `FlowError`, whatever text it is given.

`check_source` raises nothing at all; `compile_source` raises `FlowError` or returns IR.
Inputs are arbitrary text, and valid flows (generated ASTs, formatted) with random edits.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowc.compiler import check_source, compile_source
from flowc.dsl import FlowError, format
from flowc.dsl.parser import lark_parser
from tests.conftest import fake_tools
from tests.dsl import strategies

TOOLS = fake_tools()

#: The language's tokens, and some characters it has no use for.
VOCABULARY = [
    "flow", "set", "node", "start", "end", "and", "or", "not", "in", "true", "false", "null",
    "->", "?", ":", ";", "=", ",", ".", "(", ")", "[", "]", "{", "}", "==", "!=", "<", "<=",
    ">", ">=", "+", "-", "*", "/", "%", "0", "1", "-1", "2.5", "1e999", "9" * 5000, '"s"',
    "'t'", '"', "'", '"\\q"', '"\\u12"', '"\\ud800"', "\\", "#", "\n", "\r\n", "\r", " ",
    "\t", "\x00", "\x1b", "\ufeff", "é", "@", "len", "exists", "default", "min", "max",
    "abs", "max_steps", "analyze", "score", "refine", "refine_code", "max_fixes", "with",
    "timeout", "retries", "backoff",
    # Typed state, and what people type by mistake (issue 10's hints).
    "state", "str", "int", "float", "bool", "any", "list", "dict", "list[dict]", "int?",
    "state.end", 'state["x"]', "True", "None", "&&", "||", "!", "=>", "//", "if", "else",
    "\u2013", "\u201c", "\u00a0", "1e3", ".5", "5.", "007",
]  # fmt: skip

EXAMPLES = [
    "analyze -> style -> score; score ? score<80 -> refine : end",
    """\
flow code_review
set max_steps = 60
node analyze = analyze_syntax
node style   = check_style
node score   = score_code
node refine  = refine_code(max_fixes = 10)
start -> analyze
analyze -> style -> score
score ? score < 80 and default(attempts, 0) < 3 -> refine : end
refine -> analyze
""",
    """\
node notify = notify(channel = ["ops", {"k": [1, -2.5, true, null, "\\u00e9\\n"]}])
node score = score with timeout = 0.5, retries = 3, backoff = 0
set timeout = 60
start -> score
score ? score >= 90 -> notify :
        issues[-1]["line"] not in [1, 2] or -len(x.y) % 2 == 1 -> refine :
        exists(review.score) and not max(a, b) > abs(c) / 3 -> end :
        end
refine -> score
notify -> end
""",
]

_TERMINALS = {terminal.name for terminal in lark_parser().terminals}

# Text from anywhere in Unicode (lone surrogates too), heavy in the language's own tokens.
_pieces = st.sampled_from(VOCABULARY) | st.text(max_size=3) | st.characters(codec=None)
arbitrary_texts: st.SearchStrategy[str] = st.text() | st.lists(_pieces, max_size=40).map("".join)

_valid_texts: st.SearchStrategy[str] = st.sampled_from(EXAMPLES) | strategies.flows.map(format)


@st.composite
def edited_texts(draw: st.DrawFn) -> str:
    """A valid flow with a few characters or tokens inserted, deleted or replaced."""
    text = draw(_valid_texts)
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        start = draw(st.integers(min_value=0, max_value=len(text)))
        end = start + draw(st.sampled_from([0, 0, 1, 1, 2, 4, 8]))
        piece = draw(st.sampled_from(VOCABULARY) | st.characters() | st.just(""))
        text = text[:start] + piece + text[end:]
    return text


def assert_compiler_contract(text: str) -> None:
    """Diagnostics, never exceptions; messages in people's words; recovery always moves on."""
    checked = check_source(text, tools=TOOLS)
    # A name the text itself uses may be a terminal's name too (a node called `EQ`): a
    # message that repeats it is right.  Lark's names are leaks only when the text has none.
    written = set(re.findall(r"\w+", text))
    for diagnostic in checked.diagnostics:
        unquoted = re.sub(r"`[^`]*`", "", f"{diagnostic.message} {diagnostic.help or ''}")
        # A character's Unicode name (`U+00E0 LATIN SMALL LETTER A WITH GRAVE`) is no leak.
        unquoted = re.sub(r"U\+[0-9A-F]{4,6}( [A-Z0-9 -]+)?", "", unquoted)
        assert not re.search(r"__ANON|\$END", unquoted), diagnostic
        assert not set(re.findall(r"\w+", unquoted)) & _TERMINALS - written, diagnostic
        assert diagnostic.span.line >= 1 and diagnostic.span.column >= 1, diagnostic
    syntax = [(d.code, d.span, d.message) for d in checked.diagnostics if d.code < "E020"]
    assert len(syntax) == len(set(syntax)), "a syntax error was reported twice"
    try:
        compiled = compile_source(text, tools=TOOLS)
    except FlowError as exc:
        assert exc.diagnostics == checked.diagnostics
        assert checked.errors
    else:
        assert not checked.errors
        assert compiled.warnings == checked.warnings


_QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_LONG = settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))


@_QUICK
@given(arbitrary_texts)
def test_arbitrary_text_gives_diagnostics_not_exceptions(text: str) -> None:
    assert_compiler_contract(text)


@_QUICK
@given(edited_texts())
def test_edited_flows_give_diagnostics_not_exceptions(text: str) -> None:
    assert_compiler_contract(text)


def test_a_node_named_like_a_terminal_may_be_named_in_messages() -> None:
    # Drawn once by a random run: the loop message names the user's node `EQ`, which is
    # also the name of the grammar's `==` terminal.  The message is right.
    assert "EQ" in _TERMINALS
    assert_compiler_contract(";EQ -> EQ")
    messages = [d.message for d in check_source(";EQ -> EQ", tools=TOOLS).diagnostics]
    assert "this loop never reaches `end`: EQ -> EQ" in messages


@pytest.mark.parametrize("text", EXAMPLES)
def test_the_examples_compile(text: str) -> None:
    assert compile_source(text, tools=TOOLS).ir is not None


@pytest.mark.fuzz
@_LONG
@given(arbitrary_texts)
def test_arbitrary_text_gives_diagnostics_not_exceptions_long(text: str) -> None:
    assert_compiler_contract(text)


@pytest.mark.fuzz
@_LONG
@given(edited_texts())
def test_edited_flows_give_diagnostics_not_exceptions_long(text: str) -> None:
    assert_compiler_contract(text)
