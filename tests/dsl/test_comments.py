"""Comments survive formatting: above the next statement, or after the token they follow."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowc.dsl import ast, format, parse
from flowc.dsl.comments import find_comments
from flowc.dsl.formatter import canonical_policies, format_expr, format_value
from tests.dsl import strategies

SOURCE = """\
# header comment
flow x   # trailing on header

# about settings
set max_steps = 5
node a = t   # what a does
node b = t


start -> a  # begin
a -> b ? "#not" == x -> end :   # inside a branch
   end
# final words
"""

FORMATTED = """\
# header comment
flow x  # trailing on header

# about settings
set max_steps = 5
node a = t  # what a does
node b = t

start -> a                     # begin
a -> b ? "#not" == x -> end :  # inside a branch
         end
# final words
"""


def test_comments_are_kept_in_place() -> None:
    assert format(parse(SOURCE)) == FORMATTED


def test_formatting_commented_text_is_idempotent_and_keeps_meaning() -> None:
    assert format(parse(FORMATTED)) == FORMATTED
    assert parse(FORMATTED) == parse(SOURCE)


def test_a_statement_with_a_comment_inside_a_value_is_kept_as_written() -> None:
    text = 'node s = check_style(rules = [\n    "a",  # first\n    "b",\n])\nanalyze -> s -> end\n'
    assert format(parse(text)) == text.replace("\nanalyze", "\n\nanalyze")


def test_two_comments_in_one_statement() -> None:
    text = "a ? x -> b :  # one\n  y -> c :  # two\n  end\n"
    assert format(parse(text)) == "a ? x -> b :  # one\n    y -> c :  # two\n    end\n"


def test_comments_in_a_chain_stay_after_their_arrows() -> None:
    text = "a -> # one\nb -> # two\nend\n"
    assert format(parse(text)) == "a ->      # one\n    b ->  # two\n    end\n"


def test_a_branch_with_an_arm_comment_is_written_one_arm_per_line() -> None:
    text = "a -> b ? # q\n x -> c : y -> d : # one\n# alone\n e  # last\n"
    assert format(parse(text)) == (
        "a -> b ?  # q\n"
        "    x -> c :\n"
        "    y -> d :  # one\n"
        "    # alone\n"
        "    e  # last\n"
    )  # fmt: skip


def test_a_comment_after_an_arms_arrow_stays_before_its_target() -> None:
    text = "score ? score < 80 -> # too low\n refine : end\n"
    assert format(parse(text)) == (
        "score ? score < 80 ->  # too low\n"
        "            refine :\n"
        "        end\n"
    )  # fmt: skip


def test_only_comments() -> None:
    assert parse("# nothing\n").comments[0].text == "# nothing"


# --------------------------------------------- every comment keeps its neighbours


_BREAKS = st.sampled_from([" ", "\n", " # c\n", " # c\n# c\n", "\n  # c\n"])


def _step(step: ast.Name | ast.Parallel) -> str:
    """A step of a chain on one line (comments inside parallel branches keep them as written)."""
    if isinstance(step, ast.Name):
        return step.text
    return "[" + ", ".join(" -> ".join(n.text for n in chain) for chain in step.branches) + "]"


@st.composite
def _commented_route(draw: st.DrawFn) -> str:
    """A route written over lines, a comment or none after each `->`, `?` and `:`."""
    route = draw(strategies.chains | strategies.branched_routes)
    assert isinstance(route, ast.Route)
    words = [word for node in route.nodes for word in (_step(node), "->")][:-1]
    if route.branch is not None:
        words.append("?")
        for arm in route.branch.arms:
            words += [format_expr(arm.condition), "->", arm.target.text, ":"]
        words.append(route.branch.otherwise.text)
    text = ""
    for word in words:
        text += word
        if word in ("->", "?", ":"):
            text += draw(_BREAKS)
        else:
            text += " "
    return text + draw(st.sampled_from(["", "  # c"])) + "\n"


def _policy_value(value: ast.JsonValue | ast.Name) -> str:
    return value.text if isinstance(value, ast.Name) else format_value(value.value)


@st.composite
def _commented_declaration(draw: st.DrawFn) -> str:
    """A declaration with its arguments over lines, a comment or none after `(` and `,`."""
    declaration = draw(strategies.node_decls)
    assert isinstance(declaration, ast.NodeDecl)
    over = declaration.over
    head = "" if over is None else f"for {over.item.text} in {over.source.text}: "
    text = f"node {declaration.name.text} = {head}{declaration.tool.text}("
    text += draw(_BREAKS)
    for value in declaration.positional:
        text += f"{format_value(value.value)}," + draw(_BREAKS)
    for arg in declaration.args or ():
        text += f"{arg.name.text} = {format_value(arg.value.value)}," + draw(_BREAKS)
    policies = canonical_policies(declaration.policies)
    if policies:
        text += ") with " + ", ".join(f"{p.name.text} = {_policy_value(p.value)}" for p in policies)
    else:
        text += ")"
    return text + draw(st.sampled_from(["", "  # c"])) + "\n"


@st.composite
def _commented_values(draw: st.DrawFn) -> str:
    """A list written over lines inside a value or a condition, comments among its items."""
    items = draw(st.lists(st.integers(min_value=0, max_value=99), min_size=1, max_size=4))
    inside = "[" + draw(_BREAKS) + "".join(f"{item}," + draw(_BREAKS) for item in items) + "]"
    if draw(st.booleans()):
        return f"node v = t(xs = {inside})" + draw(st.sampled_from(["", "  # c"])) + "\n"
    return f"a ? len({inside}) > 0 -> end : b" + draw(st.sampled_from(["", "  # c"])) + "\n"


@st.composite
def _commented_flows(draw: st.DrawFn) -> str:
    kinds = _commented_route() | _commented_declaration() | _commented_values()
    routes = draw(st.lists(kinds, min_size=1, max_size=3))
    text = "".join(draw(st.sampled_from(["", "# c\n", "\n"])) + r for r in routes)
    count = iter(range(10_000))
    return re.sub("# c", lambda _: f"# c{next(count)}", text)  # each comment its own name


def _code_before_each_comment(text: str) -> dict[str, str]:
    """For each comment, all the code before it, without spaces: what it is written after."""
    starts = [0, *(i + 1 for i, char in enumerate(text) if char == "\n")]
    found: dict[str, str] = {}
    code, position = "", 0
    for comment in find_comments(text):
        offset = starts[comment.line - 1] + comment.column - 1
        code += text[position:offset]
        # Without spaces, and without the trailing comma of arguments on one line.
        found[comment.text] = re.sub(r",(?=[)\]])", "", re.sub(r"\s+", "", code))
        position = offset + len(comment.text)
    return found


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_commented_flows())
def test_every_comment_keeps_its_neighbours(text: str) -> None:
    formatted = format(parse(text))
    assert [c.text for c in find_comments(formatted)] == [c.text for c in find_comments(text)]
    assert _code_before_each_comment(formatted) == _code_before_each_comment(text), formatted
    assert parse(formatted) == parse(text)
    assert format(parse(formatted)) == formatted
