"""AST -> Program: default start, node order, tools by use, spans of routes."""

from __future__ import annotations

import pytest

from flowc.compiler import check_source
from flowc.compiler.program import Branch, Goto, Policy, Program


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


def test_policies_of_a_declaration_and_the_settings() -> None:
    p = program(
        "set timeout = 30\nset retries = 2\nset backoff = 0\n"
        "node f = tool with backoff = 0.5, timeout = 5\nnode g = tool with retries = 0\n"
        "f -> g -> h -> end\n"
    )
    assert (p.timeout, p.retries, p.backoff) == (30.0, 2, 0.0)
    assert p.nodes["f"].policy == Policy(timeout=5.0, retries=None, backoff=0.5)
    assert p.nodes["g"].policy == Policy(retries=0)
    assert p.nodes["h"].policy is None  # not declared: the flow's settings only


def test_defaults_without_settings() -> None:
    p = program("a -> end\n")
    assert (p.timeout, p.retries, p.backoff) == (None, 0, 1.0)
    assert p.nodes["a"].policy is None


def test_an_unknown_policy_suggests_the_nearest_name() -> None:
    checked = check_source("node f = tool with timeot = 5, retires = 2, jitter = 1\nf -> end\n")
    assert [(d.code, d.message, d.help) for d in checked.errors] == [
        ("E113", "unknown policy `timeot`", "did you mean `timeout`?"),
        ("E113", "unknown policy `retires`", "did you mean `retries`?"),
        ("E113", "unknown policy `jitter`", "the policies are `timeout`, `retries`, `backoff`"),
    ]
    assert [d.span.column for d in checked.errors] == [20, 32, 45]


def test_an_unknown_setting_suggests_the_new_names_too() -> None:
    checked = check_source("set retrie = 2\nset max_step = 3\nset nope = 1\na -> end\n")
    assert [(d.code, d.help) for d in checked.errors] == [
        ("E106", "did you mean `retries`?"),
        ("E106", "did you mean `max_steps`?"),
        ("E106", "known settings: max_steps, timeout, retries, backoff"),
    ]


def test_a_policy_given_twice_is_reported_once_and_the_first_kept() -> None:
    checked = check_source("node f = tool with retries = 1, retries = 2, retries = 3\nf -> end\n")
    assert [(d.code, d.message, d.span.column) for d in checked.errors] == [
        ("E114", "policy `retries` is given twice", 33),
        ("E114", "policy `retries` is given twice", 46),
    ]


@pytest.mark.parametrize(
    ("written", "good"),
    [
        ("timeout = 0.001", True),
        ("timeout = 604800", True),
        ("timeout = 604800.5", False),
        ("timeout = 0", False),
        ("timeout = -1", False),
        ("timeout = null", False),
        ('timeout = "5"', False),
        ("retries = 0", True),
        ("retries = 100", True),
        ("retries = 101", False),
        ("retries = 1.0", True),  # a whole number, however written
        ("retries = 1e1", True),
        ("retries = 1.5e0", False),
        ("retries = true", False),
        ("backoff = 0", True),
        ("backoff = 3600", True),
        ("backoff = 3600.1", False),
        ("backoff = -0.5", False),
        ("backoff = [1]", False),
    ],
)
def test_policy_values(written: str, good: bool) -> None:
    name = written.split()[0]
    as_policy = check_source(f"node f = tool with {written}\nf -> end\n")
    as_setting = check_source(f"set {written}\nf -> end\n")
    assert [d.code for d in as_policy.errors] == ([] if good else ["E115"])
    assert [d.code for d in as_setting.errors] == ([] if good else ["E107"])
    if not good:
        assert as_policy.errors[0].message == as_setting.errors[0].message
        assert as_policy.errors[0].message.startswith(f"`{name}` must be ")


def test_a_whole_number_written_with_an_exponent_is_a_whole_number() -> None:
    lowered = program("set max_steps = 1e3\nnode f = tool with retries = 2.0\nf -> end\n")
    assert (lowered.max_steps, type(lowered.max_steps)) == (1000, int)
    policy = lowered.nodes["f"].policy
    assert policy is not None and policy.retries == 2
    assert check_source("set max_steps = 1.5e0\nf -> end\n").errors[0].code == "E107"
