"""The front end's limits: size (E001), encodable text (E002), nesting (E003), control characters.

Whatever the input, the parser answers with diagnostics: never `MemoryError`,
`RecursionError` or a hang.  Lark's LALR parser keeps its own stack, and the AST builder
reduces one rule at a time, so deep inputs cost no Python recursion; the nesting limits
then keep the later, recursive stages (lowering, checks, IR, evaluation) safe.  Nesting
counts what is written, parentheses included, but a flat chain (`a or b or c`) is one
level; the tree such a chain makes is bounded too (`MAX_TREE_DEPTH`).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from lark import Token
from lark.parsers.lalr_parser_state import ParserState

from flowc.compiler import check_ir, check_source, compile_source
from flowc.dsl import FlowError, Span, ast, parse
from flowc.dsl.diagnostics import clip_quoted
from flowc.dsl.limits import (
    MAX_NESTING,
    MAX_SHOWN_TOKEN,
    MAX_SOURCE_BYTES,
    MAX_TREE_DEPTH,
    MAX_TYPE_DEPTH,
)

Found = tuple[str, str, Span]


def problems(source: str) -> list[Found]:
    with pytest.raises(FlowError) as caught:
        parse(source)
    return [(d.code, d.message, d.span) for d in caught.value.diagnostics]


def codes(source: str) -> list[str]:
    """The codes `check_source` reports, which must not raise whatever the input."""
    return [d.code for d in check_source(source).diagnostics]


# ------------------------------------------------------------------- size


def test_the_limit_is_one_mebibyte() -> None:
    assert MAX_SOURCE_BYTES == 1024 * 1024


def test_a_text_of_exactly_the_limit_is_parsed() -> None:
    text = "a -> b\n#" + "x" * (MAX_SOURCE_BYTES - 8)
    assert len(text.encode()) == MAX_SOURCE_BYTES
    assert parse(text) == ast.Flow((ast.Route((ast.Name("a"), ast.Name("b")), None),))


def test_one_byte_over_the_limit_is_e001() -> None:
    text = "#" * (MAX_SOURCE_BYTES + 1)
    with pytest.raises(FlowError) as caught:
        parse(text)
    (found,) = caught.value.diagnostics
    assert (found.code, found.message) == (
        "E001",
        "the text is 1,048,577 bytes; the limit is 1,048,576 bytes",
    )
    assert found.help == "split the flow into smaller files"


def test_the_limit_counts_utf8_bytes_not_characters() -> None:
    text = "# " + "é" * (MAX_SOURCE_BYTES // 2)  # fewer characters than the limit, more bytes
    assert len(text) < MAX_SOURCE_BYTES < len(text.encode())
    assert [code for code, _, _ in problems(text)] == ["E001"]


def test_a_huge_text_is_refused_without_running_out_of_memory() -> None:
    text = "a -> b\n" * (2 * MAX_SOURCE_BYTES)  # 14 MiB of valid statements
    assert problems(text) == [
        ("E001", "the text is 14,680,064 bytes; the limit is 1,048,576 bytes", Span(1, 1, 1, 1))
    ]
    assert codes(text) == ["E001"]


# ----------------------------------------------------------- lone surrogates


def test_a_lone_surrogate_is_e002() -> None:
    assert problems('a -> b\nc ? x == "\ud800" -> d : e') == [
        (
            "E002",
            "the text holds a lone surrogate, which UTF-8 cannot encode",
            Span(2, 11, 2, 12),
        )
    ]


def test_a_lone_surrogate_in_a_too_large_text_is_still_e001() -> None:
    assert [code for code, _, _ in problems("\udfff" * (MAX_SOURCE_BYTES + 1))] == ["E001"]


# ------------------------------------------------------------------ nesting

DEEP = 5_000


def nesting(source: str) -> list[Found]:
    """The E003 diagnostics for `source`, checked through the compiler as well."""
    assert codes(source) == ["E003"]
    return problems(source)


E003 = "nested more than 100 levels deep"
TREE = (
    "more than 200 levels deep as a tree: a chain of operators (`a or b or c`) is one level "
    "of nesting, but one level of the tree per operator"
)


@pytest.mark.parametrize(
    ("condition", "end_column", "message"),
    [
        ("not " * DEEP + "x", 5 + 4 * DEEP + 1, E003),
        ("-" * DEEP + "x", 5 + DEEP + 1, E003),
        ("-(" * DEEP + "x" + ")" * DEEP, 5 + 3 * DEEP + 1, E003),  # to the last `)`
        ("(" * DEEP + "x" + ")" * DEEP, 5 + 2 * DEEP + 1, E003),
        ("[" * DEEP + "]" * DEEP, 5 + 2 * DEEP, E003),
        ("len(" * DEEP + "x" + ")" * DEEP, 5 + 5 * DEEP + 1, E003),
        ("a + (" * DEEP + "a" + ")" * DEEP, 5 + 6 * DEEP + 1, E003),
        (" + ".join(["a"] * DEEP), 5 + 4 * DEEP - 3, TREE),
        ("a or " * DEEP + "a", 5 + 5 * DEEP + 1, TREE),
    ],
    ids=["not", "minus", "minus-parentheses", "parentheses", "lists", "calls", "right-sums",
         "sum", "or"],
)  # fmt: skip
def test_deep_conditions_are_e003(condition: str, end_column: int, message: str) -> None:
    source = f"a ? {condition} -> b : c"
    assert nesting(source) == [("E003", message, Span(1, 5, 1, end_column))]


@pytest.mark.parametrize(
    "value",
    [
        "[" * DEEP + "]" * DEEP,
        '{"k": ' * DEEP + "1" + "}" * DEEP,
        '[{"k": ' * DEEP + "1" + "}]" * DEEP,
    ],
    ids=["lists", "objects", "mixed"],
)
def test_deep_static_values_are_e003(value: str) -> None:
    assert [code for code, _, _ in nesting(f"set x = {value}")] == ["E003"]
    assert [code for code, _, _ in nesting(f"node a = f(x = 1, y = {value})")] == ["E003"]


def test_the_nesting_limit_is_inclusive() -> None:
    at_limit = "not " * (MAX_NESTING - 1) + "x"  # `x` is the 100th level
    parse(f"a ? {at_limit} -> b : c")
    parse("set x = " + "[" * MAX_NESTING + "]" * MAX_NESTING)
    assert [code for code, _, _ in problems(f"a ? not {at_limit} -> b : c")] == ["E003"]
    over = MAX_NESTING + 1
    assert [code for code, _, _ in problems("set x = " + "[" * over + "]" * over)] == ["E003"]


LEVELS_OF_NESTING = [
    # (a condition nested exactly `MAX_NESTING` levels deep, the same one level deeper)
    ("not " * 99 + "x", "not " * 100 + "x"),
    ("(" * 99 + "x" + ")" * 99, "(" * 100 + "x" + ")" * 100),
    ("abs(" * 98 + "x" + ")" * 98 + " > 0", "abs(" * 99 + "x" + ")" * 99 + " > 0"),
    ("-(" * 49 + "x" + ")" * 49 + " > 0", "-(" * 49 + "(x)" + ")" * 49 + " > 0"),
    ("(a or " * 49 + "(a)" + ")" * 49, "(a or " * 49 + "((a))" + ")" * 49),
    ("[" * 99 + "]" * 99 + " != []", "[" * 100 + "]" * 100 + " != []"),
    # A chain counts once, and the parentheses around it once more.
    ("not (" * 49 + "a or b or c" + ")" * 49, "not (" * 49 + "not (a or b or c)" + ")" * 49),
]


@pytest.mark.parametrize(("at_limit", "over"), LEVELS_OF_NESTING)
def test_nesting_counts_what_is_written_parentheses_included(at_limit: str, over: str) -> None:
    checked = check_source(f"node a = a\na ? {at_limit} -> a : end")
    assert not checked.errors
    assert nesting(f"node a = a\na ? {over} -> a : end")[0][:2] == ("E003", E003)


@pytest.mark.parametrize(("at_limit", "over"), LEVELS_OF_NESTING)
def test_a_flow_nested_to_the_limit_runs_through_every_stage(at_limit: str, over: str) -> None:
    deep = "[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)
    ir = compile_source(f"node a = a(x = {deep})\na ? {at_limit} -> a : end").ir
    text = ir.to_json()
    assert not check_ir(text).errors  # the IR is within the IR's limits, as JSON text too
    assert not check_ir(json.loads(text)).errors


@pytest.mark.parametrize("op", ["or", "and", "+", "*", "-"])
def test_a_flat_chain_is_one_level_of_nesting(op: str) -> None:
    operands = "x" if op in ("or", "and") else "n"
    chain = f" {op} ".join([operands] * 102)  # 101 operators
    condition = chain if op in ("or", "and") else f"{chain} > 0"
    source = f"node a = a\na ? not ({condition}) -> a : end"
    assert not check_source(source).errors
    text = compile_source(source).ir.to_json()
    assert not check_ir(text).errors
    assert not check_ir(json.loads(text)).errors


def test_a_chain_is_limited_by_the_depth_of_its_tree() -> None:
    # A comparison, 197 `+` and a path are 200 levels of the tree; one more `+` is too deep.
    longest = " + ".join(["n"] * 198) + " > 0"
    assert not check_source(f"node a = a\na ? {longest} -> a : end").errors
    assert MAX_TREE_DEPTH == 200
    too_long = " + ".join(["n"] * 199) + " > 0"
    assert nesting(f"node a = a\na ? {too_long} -> a : end") == [
        ("E003", TREE, Span(2, 5, 2, 5 + len(too_long)))
    ]


def test_each_deep_condition_is_reported_once_where_it_is() -> None:
    deep = "not " * 200 + "x"
    source = f"a ? {deep} -> b : ok -> c : {deep} -> d : e\nset y = {'[' * 200}{']' * 200}"
    assert [(code, span.line, span.column) for code, _, span in problems(source)] == [
        ("E003", 1, 5),
        ("E003", 1, 824),
        ("E003", 2, 9),
    ]


def test_ten_thousand_parentheses_are_e003_where_the_condition_is() -> None:
    # `(` ... `)` leaves no node in the AST, but it is nesting as written.
    deep = "(" * 10_000 + "x" + ")" * 10_000
    assert nesting(f"a -> b\nb ? {deep} -> c : d") == [("E003", E003, Span(2, 5, 2, 5 + len(deep)))]
    assert parse("a ? ((x)) -> b : c") == parse("a ? x -> b : c")


def test_long_flat_texts_are_not_nesting() -> None:
    chain = " -> ".join(f"n{i}" for i in range(DEEP))
    route = parse(chain).statements[0]
    assert isinstance(route, ast.Route) and len(route.nodes) == DEEP
    arms = " : ".join(f"x == {i} -> n{i}" for i in range(DEEP))
    branch = parse(f"a ? {arms} : end").statements[0]
    assert isinstance(branch, ast.Route) and branch.branch is not None
    assert len(branch.branch.arms) == DEEP
    path = parse("a ? x" + ".y" * DEEP + "[0]" * DEEP + " -> b : c").statements[0]
    assert isinstance(path, ast.Route) and path.branch is not None
    condition = path.branch.arms[0].condition
    assert isinstance(condition, ast.PathExpr) and len(condition.parts) == 2 * DEEP + 1


# ------------------------------------------------------ control characters


@pytest.mark.parametrize(
    "char", ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0e", "\x1b", "\x1f", "\x7f", "\r"]
)
def test_control_characters_are_e011_in_code_strings_and_comments(char: str) -> None:
    shown = repr(char)[1:-1]
    assert problems(f"a{char} -> b") == [
        ("E011", f"unexpected character `{shown}` after `a`", Span(1, 2, 1, 3))
    ]
    assert problems(f'a ? x == "{char}" -> b : c') == [
        ("E011", f"unexpected character `{shown}` in a string", Span(1, 11, 1, 12))
    ]
    assert problems(f"a -> b # a{char}b") == [
        ("E011", f"unexpected character `{shown}`", Span(1, 11, 1, 12))
    ]


def test_tabs_are_allowed_everywhere_and_form_feeds_outside_strings() -> None:
    assert parse('a\t->\fb\t# a\tcomment\f\nc ? x == "\t" -> d : e') == parse(
        'a -> b\nc ? x == "\\t" -> d : e'
    )
    assert problems('a ? x == "\f" -> b : c') == [
        ("E011", "unexpected character `\\x0c` in a string", Span(1, 11, 1, 12))
    ]


def test_escaped_control_characters_are_fine_in_strings() -> None:
    route = parse('a ? x == "\\u0000\\u001b\\n" -> b : c').statements[0]
    assert isinstance(route, ast.Route) and route.branch is not None
    comparison = route.branch.arms[0].condition
    assert isinstance(comparison, ast.Binary)
    assert comparison.right == ast.Literal("string", "\x00\x1b\n")


def test_lines_of_null_bytes_are_one_error_per_line_then_stop() -> None:
    found = problems("\x00\x00\n" * 1_000)
    assert found[0] == ("E011", "unexpected character `\\x00`", Span(1, 1, 1, 2))
    assert len(found) == 51
    assert found[-1][:2] == ("E010", "too many syntax errors; stopped after 50")


def test_the_help_for_e003_fits_what_is_nested() -> None:
    with pytest.raises(FlowError) as caught:
        parse(f"a ? {'not ' * 101}x -> b : c\nset x = {'[' * 101}{']' * 101}")
    assert [d.help for d in caught.value.diagnostics] == [
        "split the condition, or name intermediate results in the state",
        "flatten the value",
    ]


def test_a_large_broken_text_is_parsed_about_once_whatever_its_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each pass of the recovery resumes at the broken statement: 48 errors spread over 140 KB
    # cost about one parse of the text, not 48 (counted in tokens fed to the parser).
    fed = 0
    feed = ParserState.feed_token

    def counted(self: ParserState[Any], token: Token, is_end: bool = False) -> Any:
        nonlocal fed
        fed += 1
        return feed(self, token, is_end)

    monkeypatch.setattr(ParserState, "feed_token", counted)
    lines = ["a -> b\n"] * 20_000
    parse("".join(lines))
    clean, fed = fed, 0
    for line in range(400, 19_600, 400):
        lines[line] = "a -> -> b\n"
    with pytest.raises(FlowError) as caught:
        parse("".join(lines))
    assert len(caught.value.diagnostics) == 48
    assert caught.value.diagnostics[-1].span.line == 19_201
    assert fed < 1.1 * clean


def test_a_type_nested_deeper_than_the_limit_is_one_e003_and_formats_nothing() -> None:
    def declaration(depth: int) -> str:
        return "state x: " + "list[" * (depth - 1) + "int" + "]" * (depth - 1) + "\na -> end\n"

    parse(declaration(MAX_TYPE_DEPTH))  # at the limit: fine
    with pytest.raises(FlowError) as caught:
        parse(declaration(5_000))  # far past it: one error, no RecursionError anywhere
    assert [d.code for d in caught.value.diagnostics] == ["E003"]
    assert "32 levels" in caught.value.diagnostics[0].message


# ------------------------------------------------------------------- what messages quote


def test_a_huge_name_is_quoted_cut_to_its_first_characters_with_its_length() -> None:
    name = "x" * 500_000
    ((code, message, span),) = problems(name)
    assert (code, span) == ("E010", Span(1, 500_001, 1, 500_002))
    shown = "x" * MAX_SHOWN_TOKEN
    assert message == (
        f"expected `->` or `?` after `{shown}…` (500,000 characters), found the end of the text"
    )


def test_every_message_about_a_huge_name_is_short() -> None:
    # The compiler's messages quote names too: an unknown tool, here, and its suggestions.
    name = "t" * 200_000
    diagnostics = check_source(f"node a = {name}\na -> end\n", tools={}).diagnostics
    assert [d.code for d in diagnostics] == ["E201"]
    assert all(len(d.message) < 400 and len(d.help or "") < 400 for d in diagnostics)
    assert f"`{'t' * MAX_SHOWN_TOKEN}…` (200,000 characters)" in diagnostics[0].message


def test_backquotes_pair_in_order_and_only_long_quotes_are_cut() -> None:
    prose = "a sentence between two quotes that is well over sixty characters long"
    text = f"`short` {prose} `{'y' * 61}` and `{'z' * 60}`"
    assert clip_quoted(text) == (f"`short` {prose} `{'y' * 60}…` (61 characters) and `{'z' * 60}`")
    assert clip_quoted("an unpaired ` and " + "w" * 80) == "an unpaired ` and " + "w" * 80
