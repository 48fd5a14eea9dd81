"""The canonical formatter: round-trip laws over generated ASTs, and the text it writes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from flowc.dsl import ast, format, parse
from flowc.dsl.comments import Comment
from flowc.dsl.formatter import canonical_policies
from flowc.dsl.layout import MAX_ALIGNMENT
from tests.dsl import strategies
from tests.dsl.test_parser import DESIGN_EXAMPLE

_QUICK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_LONG = settings(max_examples=5_000, deadline=None, suppress_health_check=list(HealthCheck))


def _canonical(flow: ast.Flow) -> ast.Flow:
    """The flow as the formatter writes it: policies in their canonical order."""
    return replace(
        flow,
        statements=tuple(
            replace(s, policies=canonical_policies(s.policies))
            if isinstance(s, ast.NodeDecl)
            else s
            for s in flow.statements
        ),
    )


def _round_trip(flow: ast.Flow) -> None:
    text = format(flow)
    reparsed = parse(text)
    assert reparsed == _canonical(flow), text
    assert format(reparsed) == text


@_QUICK
@given(strategies.flows)
def test_parse_of_format_gives_the_same_flow(flow: ast.Flow) -> None:
    _round_trip(flow)


@_QUICK
@given(strategies.conditions)
def test_every_condition_tree_survives_formatting(condition: ast.Expr) -> None:
    branch = ast.Branch((ast.Arm(condition, ast.Name("b")),), ast.Name("c"))
    _round_trip(ast.Flow((ast.Route((ast.Name("a"),), branch),)))


@_QUICK
@given(strategies.json_values)
def test_every_static_value_survives_formatting(value: ast.Value) -> None:
    _round_trip(ast.Flow((ast.Setting(ast.Name("x"), ast.JsonValue(value)),)))


@pytest.mark.fuzz
@_LONG
@given(strategies.flows)
def test_parse_of_format_gives_the_same_flow_long(flow: ast.Flow) -> None:
    _round_trip(flow)


# ---------------------------------------------------------------- the text written

DESIGN_EXAMPLE_FORMATTED = """\
# code_review.flow
flow code_review    # optional header: the flow's name
set max_steps = 60  # optional settings

node analyze = analyze_syntax  # bind a node name to a registered tool
node style   = check_style
node score   = score_code
node refine  = refine_code(max_fixes = 10)  # static keyword arguments (JSON literals)

start -> analyze  # optional: default start is the first node named
analyze -> style -> score
score ? score < 80 and default(attempts, 0) < 3 -> refine : end
refine -> analyze
"""


def test_the_design_example_is_written_canonically() -> None:
    assert format(parse(DESIGN_EXAMPLE)) == DESIGN_EXAMPLE_FORMATTED


def test_the_one_liner_becomes_two_lines() -> None:
    text = "analyze -> style -> score; score ? score<80 -> refine : end"
    assert format(parse(text)) == "analyze -> style -> score\nscore ? score < 80 -> refine : end\n"


def test_an_empty_flow_is_empty_text() -> None:
    assert format(parse("\n\n;;\n")) == ""
    assert format(parse("# nothing\n\n;;\n")) == "# nothing\n"  # comments stay


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("((a or b)) and c", "(a or b) and c"),
        ("a or (b and c)", "a or b and c"),
        ("(a or b) or c", "a or b or c"),
        ("a or (b or c)", "a or (b or c)"),
        ("a - (b - c)", "a - (b - c)"),
        ("(a - b) - c", "a - b - c"),
        ("(a + b) * c", "(a + b) * c"),
        ("a + (b * c)", "a + b * c"),
        ("(a < b) == (c < d)", "(a < b) == (c < d)"),
        ("not (a == b)", "not a == b"),
        ("(not a) == b", "(not a) == b"),
        ("not (a and b)", "not (a and b)"),
        ("-(a + b)", "-(a + b)"),
        ("- - a", "--a"),
        ("a - -1", "a - -1"),
        ("-a * b", "-a * b"),
        ("x not in [1,2,]", "x not in [1, 2]"),
        ("len( x )>=1", "len(x) >= 1"),
        ("x['k'][-1].y[\"a b\"]", 'x.k[-1].y["a b"]'),
        ('x["é"]', 'x["é"]'),
        ("x == 'it\\'s'", 'x == "it\'s"'),
        ('x == "\\u0041\\n"', 'x == "A\\n"'),
        ("x == 1e3", "x == 1000.0"),
        ("x == 1e20", "x == 1e+20"),
    ],
)
def test_conditions_are_written_with_the_fewest_parentheses(written: str, canonical: str) -> None:
    assert format(parse(f"a ? {written} -> b : c")) == f"a ? {canonical} -> b : c\n"


def test_static_values_are_written_as_json() -> None:
    text = "node a = f(x = -1.5e3, y = [1, [], {}], z = {'k': null,}, w = \"\\u007f\")"
    assert format(parse(text)) == (
        'node a = f(x = -1500.0, y = [1, [], {}], z = {"k": null}, w = "\\u007f")\n'
    )


def test_tool_without_parentheses_stays_apart_from_an_empty_call() -> None:
    assert format(parse("node a = f\nnode b = f()")) == "node a = f\nnode b = f()\n"


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        (
            'node fetch = call_api(url="https://x") with timeout=5,retries=3,backoff=0.5',
            'node fetch = call_api(url = "https://x") with timeout = 5, retries = 3, backoff = 0.5',
        ),
        (
            "node a = t with backoff = 0.5, retries = 3, timeout = 5",
            "node a = t with timeout = 5, retries = 3, backoff = 0.5",
        ),
        (
            "node a = t with retries = 1, timeout = 2.50",
            "node a = t with timeout = 2.5, retries = 1",
        ),
        ("node a = t with backoff = 1e-1", "node a = t with backoff = 0.1"),
        # names the language does not know follow the known ones, as written
        (
            "node a = t with zeta = 1, backoff = 2, alpha = 3, timeout = 4",
            "node a = t with timeout = 4, backoff = 2, zeta = 1, alpha = 3",
        ),
        ("node a = t() with retries = 0", "node a = t() with retries = 0"),
    ],
)
def test_policies_are_written_in_the_canonical_order(written: str, canonical: str) -> None:
    assert format(parse(written)) == canonical + "\n"
    assert format(parse(canonical)) == canonical + "\n"


def test_settings_of_the_policies_keep_their_place() -> None:
    text = "set retries = 2\nset timeout = 30\nset backoff = 0.5\nnode a = t with retries = 0\n"
    assert format(parse(text)) == text


def test_declarations_with_policies_align_their_equals_signs() -> None:
    text = "node a = t with timeout = 1\nnode long_name = u(x = 1) with retries = 2\n"
    assert format(parse(text)) == (
        "node a         = t with timeout = 1\nnode long_name = u(x = 1) with retries = 2\n"
    )


def test_a_long_branch_is_written_one_arm_per_line() -> None:
    arms = " : ".join(f"score >= {n} -> publish_{n}" for n in (90, 80, 70, 60))
    flow = parse(f"score ? {arms} : refine")
    assert format(flow) == (
        "score ? score >= 90 -> publish_90 :\n"
        "        score >= 80 -> publish_80 :\n"
        "        score >= 70 -> publish_70 :\n"
        "        score >= 60 -> publish_60 :\n"
        "        refine\n"
    )
    assert parse(format(flow)) == flow


def test_a_long_branch_with_one_arm_stays_on_one_line() -> None:
    condition = " and ".join(f"long_name_{n} > {n}" for n in range(8))
    text = f"a ? {condition} -> b : c\n"
    assert len(text) > 100
    assert format(parse(text)) == text


# ---------------------------------------------------------------- alignment


def test_neighbouring_declarations_align_their_equals_signs() -> None:
    text = "node a = t\n# between\nnode long_name = u(x = 1)\n\nnode bb = v\nset max_steps = 3\n"
    assert format(parse(text)) == (
        "node a         = t\n"
        "# between\n"
        "node long_name = u(x = 1)\n"
        "\n"
        "node bb = v\n"
        "set max_steps = 3\n"
    )


def test_a_lone_declaration_has_one_space_before_its_equals_sign() -> None:
    assert format(parse("node   a   =   t\n")) == "node a = t\n"


def test_neighbouring_trailing_comments_align_two_spaces_after_the_longest_code() -> None:
    text = "a -> b # one\nb -> c -> d # two\nd -> end\ne -> end # three\n"
    assert format(parse(text)) == (
        "a -> b       # one\n"
        "b -> c -> d  # two\n"
        "d -> end\n"
        "e -> end  # three\n"
    )  # fmt: skip


def test_a_comment_group_holds_no_line_longer_than_the_width() -> None:
    long_route = " -> ".join(f"node_{n}" for n in range(8))  # 76 characters
    text = f"a -> b  # short\n{long_route}  # a comment that does not fit\nc -> d  # x\n"
    assert format(parse(text)) == (
        "a -> b  # short\n"
        f"{long_route}  # a comment that does not fit\n"  # 107 characters: a group of its own
        "c -> d  # x\n"
    )
    text = f"a -> b  # short\n{long_route}  # fits\n"
    assert format(parse(text)) == f"a -> b{' ' * 72}# short\n{long_route}  # fits\n"


def test_a_comment_line_ends_a_comment_group() -> None:
    text = "a -> b  # one\n# alone\nbb -> c  # two\n"
    assert format(parse(text)) == "a -> b  # one\n# alone\nbb -> c  # two\n"


def test_alignment_is_idempotent_and_keeps_the_flow() -> None:
    text = "node x = a  # first\nnode yyyy = b(k = [1, 2])  # second\n\nx -> yyyy -> end\n"
    once = format(parse(text))
    assert format(parse(once)) == once
    assert parse(once) == parse(text)


# --------------------------------------------------------- bounded padding, one pass


def test_a_name_too_long_to_line_up_is_written_as_it_is_and_widens_no_other() -> None:
    long_name = "n" * (MAX_ALIGNMENT + 1)
    text = f"node a = t\nnode {long_name} = u\nnode bbb = v\n"
    assert format(parse(text)) == f"node a   = t\nnode {long_name} = u\nnode bbb = v\n"


def test_the_arms_of_a_branch_on_a_long_chain_are_indented_by_four() -> None:
    chain = " -> ".join(f"step_{n}" for n in range(6))  # 44 characters: too long to line up
    arms = " : ".join(f"score >= {n} -> publish_{n}" for n in (90, 80))
    assert format(parse(f"{chain} ? {arms} : refine")) == (
        f"{chain} ? score >= 90 -> publish_90 :\n"
        "    score >= 80 -> publish_80 :\n"
        "    refine\n"
    )  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        # one long name among many declarations: each would be padded to its length
        "node " + "x" * 20_000 + " = t\n" + "".join(f"node n{i} = t\n" for i in range(2_000)),
        # a long chain before many arms: each arm would be indented past it
        " -> ".join(f"n{i}" for i in range(3_000))
        + " ? "
        + " : ".join(f"x == {i} -> a" for i in range(2_000))
        + " : end\n",
    ],
    ids=["declarations", "arms"],
)
def test_lining_things_up_adds_at_most_a_bounded_padding_per_line(text: str) -> None:
    formatted = format(parse(text))
    assert len(formatted) <= len(text) + MAX_ALIGNMENT * formatted.count("\n")
    assert parse(formatted) == parse(text)
    assert format(parse(formatted)) == formatted


class _CountedComments(tuple[Comment, ...]):
    """A tuple of comments that counts how often it is read by index or slice."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        _CountedComments.reads += 1
        return super().__getitem__(index)


def test_comments_are_attached_in_one_pass_over_statements_and_comments() -> None:
    text = "".join(f"# above {i}\nn{i} -> end  # after {i}\n" for i in range(2_000))
    flow = parse(text)
    comments = _CountedComments(flow.comments)
    _CountedComments.reads = 0
    formatted = format(replace(flow, comments=comments))
    assert formatted == text
    # Each comment is looked at a few times, each statement a few more: no rescans.
    assert _CountedComments.reads <= 3 * (len(flow.statements) + len(comments))


# ------------------------------------------------------- keys read after `state`


@pytest.mark.parametrize(
    ("written", "parts", "canonical"),
    [
        ("state.end", ("end",), "state.end"),
        ("state['end'].in[0]", ("end", "in", 0), "state.end.in[0]"),
        ('state["needs review"][-1]', ("needs review", -1), 'state["needs review"][-1]'),
        ("state.score", ("score",), "score"),  # no need for `state`
        ("state.state", ("state",), "state.state"),
        ('state["é"]', ("é",), 'state["é"]'),
        ("x[- 1]", ("x", -1), "x[-1]"),
    ],
)
def test_a_key_that_is_reserved_or_no_name_is_read_after_state(
    written: str, parts: tuple[str | int, ...], canonical: str
) -> None:
    flow = parse(f"a ? exists({written}) -> b : c")
    route = flow.statements[0]
    assert isinstance(route, ast.Route) and route.branch is not None
    assert route.branch.arms[0].condition == ast.Call("exists", (ast.PathExpr(parts),))
    assert format(flow) == f"a ? exists({canonical}) -> b : c\n"


def test_parallel_branches_and_reducers_are_written_canonically() -> None:
    text = "state issues:list[dict]=[]   by   extend\na->[ b->b2 ,c,]->d\n"
    assert (
        format(parse(text)) == "state issues: list[dict] = [] by extend\n\na -> [b -> b2, c] -> d\n"
    )
