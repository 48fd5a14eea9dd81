"""AST -> Program: default start, node order, tools by use, spans of routes."""

from __future__ import annotations

from flowc.compiler import check_source
from flowc.compiler.program import Branch, Goto, Program


def program(text: str) -> Program:
    checked = check_source(text)
    assert not checked.errors, checked.errors
    assert checked.program is not None
    return checked.program


def test_request_one_liner() -> None:
    p = program("analyze -> style -> score; score ? score<80 -> refine : end")
    assert p.start == "analyze"
    assert list(p.nodes) == ["analyze", "style", "score", "refine"]
    assert all(node.tool == node.name for node in p.nodes.values())
    goto = p.routes["analyze"]
    assert isinstance(goto, Goto) and goto.target == "style"
    assert isinstance(p.routes["score"], Branch)
    assert p.routes["score"].targets == ("refine", "end")
    assert p.max_steps == 1000


def test_default_start_is_the_first_routed_node() -> None:
    p = program("node helper = tool\nnode a = tool\nb -> a -> end\nhelper -> end\n")
    assert p.start == "b"


def test_explicit_start() -> None:
    p = program("a -> end\nstart -> b\nb -> a\n")
    assert p.start == "b"
    assert p.start_span.line == 2


def test_only_declarations_start_at_the_first() -> None:
    p = program("node only = tool\n")
    assert p.start == "only"


def test_route_spans_point_at_the_edge() -> None:
    p = program("a -> b\nb ? x > 1 -> a : end\n")
    goto = p.routes["a"]
    assert isinstance(goto, Goto)
    assert (goto.span.line, goto.span.column, goto.span.end_column) == (1, 1, 7)
    assert (goto.target_span.column, goto.target_span.end_column) == (6, 7)
    branch = p.routes["b"]
    assert isinstance(branch, Branch)
    assert branch.arms[0].span.column == 5
    assert branch.otherwise_span.column == 18


def test_settings_and_args() -> None:
    p = program(
        'flow f\nset max_steps = 7\nnode r = refine(limit = -2, tags = ["a"], o = {"k": null})\n'
        "r -> end\n"
    )
    assert p.name == "f"
    assert p.max_steps == 7
    assert p.nodes["r"].args == {"limit": -2, "tags": ["a"], "o": {"k": None}}
    assert p.nodes["r"].declared


def test_source_hash_changes_with_the_text() -> None:
    first = program("a -> end\n").source_hash
    second = program("a -> end \n").source_hash
    assert first and second and first != second
