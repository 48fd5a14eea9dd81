"""Data-flow checks: keys read before any path writes them (E601), on some paths only (W602),
writes that contradict declarations (E603), conditions typed by the state; and the branch
checks that go with them (E308, E309, W504, W505) and `max_steps` (E402)."""

from __future__ import annotations

import pytest

from flowc.compiler import ToolSpec, check_ir, check_source, compile_source
from flowc.compiler.coverage import Coverage
from flowc.compiler.tools import KeyContract
from flowc.compiler.types import BOOL, INT, STR
from flowc.dsl import ast
from flowc.dsl.diagnostics import Diagnostic
from flowc.dsl.parser import parse
from tests.conftest import fake_tools

HEADER = """\
node analyze = typed_analyze
node style   = typed_style
node score   = typed_score
node refine  = typed_refine
node review  = typed_review
"""


GRAPH_WARNINGS = frozenset(["W501", "W502", "W503"])


def found(source: str, tools: dict[str, ToolSpec] | None = None, **options: bool) -> list[str]:
    """`CODE line:column message` of each diagnostic but unused, unreachable and dead-end
    nodes (W501-W503), with the typed tools unless `untooled`."""
    table = fake_tools() if tools is None and not options.get("untooled") else tools
    checked = check_source(source, tools=table)
    return [
        f"{d.code} {d.span.line}:{d.span.column} {d.message}"
        for d in checked.diagnostics
        if d.code not in GRAPH_WARNINGS and not d.code.startswith("W0")
    ]


def problems(source: str, tools: dict[str, ToolSpec] | None = None) -> list[Diagnostic]:
    """The diagnostics `found` keeps, as objects."""
    checked = check_source(source, tools=fake_tools() if tools is None else tools)
    return [
        d
        for d in checked.diagnostics
        if d.code not in GRAPH_WARNINGS and not d.code.startswith("W0")
    ]


def codes(source: str, tools: dict[str, ToolSpec] | None = None) -> list[str]:
    return [line.split()[0] for line in found(source, tools)]


# ------------------------------------------------------------------ E601: never written


def test_a_typo_in_a_key_is_an_error_with_a_suggestion() -> None:
    [problem] = problems(
        HEADER + "analyze -> style -> score\nscore ? syntax_okk -> end : refine\nrefine -> end\n"
    )
    assert (problem.code, problem.message, problem.help) == (
        "E601",
        "no path to this branch writes `syntax_okk`, and no `state` declares it",
        "did you mean `syntax_ok`?",
    )
    assert (problem.span.line, problem.span.column, problem.span.end_column) == (7, 9, 19)


@pytest.mark.parametrize(("written", "meant"), [("True", "true"), ("False", "false"),
                                                ("None", "null")])  # fmt: skip
def test_python_constants_are_unwritten_keys_with_the_constant_as_help(
    written: str, meant: str
) -> None:
    checked = check_source(
        f"node check = typed_analyze\n\ncheck ? syntax_ok == {written} -> end : end\n",
        tools=fake_tools(),
    )
    problems = [d for d in checked.diagnostics if d.code == "E601"]
    assert [(d.message, d.help) for d in problems] == [
        (
            f"no path to this branch writes `{written}`, and no `state` declares it",
            f"did you mean `{meant}`?",
        )
    ]


def test_a_tool_that_requires_an_unwritten_key_is_an_error_at_its_tool() -> None:
    source = "state code: str\n\nnode review = typed_review\n\nstart -> review -> end\n"
    assert found(source) == [
        "E601 3:15 tool `typed_review` reads `score`, but no path to node `review` writes it"
    ]


def test_a_key_that_is_declared_or_guarded_is_not_reported() -> None:
    declared = "state code: str\nstate flag: bool = false\n"
    assert found(declared + HEADER + "analyze ? flag -> end : end\n") == []
    guarded = [
        "exists(nope) and nope > 1",
        "not exists(nope) or nope > 1",
        "default(nope, 0) > 1",
        "exists(nope.deep)",
    ]
    for condition in guarded:
        assert found(HEADER + f"analyze ? {condition} -> end : end\n") == [], condition
    # An earlier arm that was false guards the later ones.
    assert found(HEADER + "analyze ? not exists(nope) -> end : nope -> end : end\n") == []
    # `or` does not guard its right side with an `exists` on its left.
    assert codes(HEADER + "analyze ? exists(nope) or nope -> end : end\n") == ["W604"]


def test_a_key_read_twice_in_one_branch_is_reported_once() -> None:
    source = HEADER + "analyze ? nope -> end : not nope and syntax_ok -> end : end\n"
    assert codes(source) == ["W604"]


def test_an_untyped_flow_may_read_its_input_but_not_a_near_miss() -> None:
    # Without `state` declarations the input may hold any key: a warning names it...
    [problem] = problems(HEADER + "analyze ? retry_budget > 1 -> end : end\n")
    assert (problem.code, problem.message, problem.help) == (
        "W604",
        "no path to this branch writes `retry_budget`: it can only come from the run's input",
        "declare it as an input: `state retry_budget: TYPE`",
    )
    # ... but a near miss of a known key, or Python's `True`, is a mistake.
    assert codes(HEADER + "analyze ? syntax_okk -> end : end\n") == ["E601"]
    # With declarations, the input is what they say: any unwritten key is an error.
    typed = "state code: str\n" + HEADER + "analyze ? retry_budget > 1 -> end : end\n"
    assert codes(typed) == ["E601"]


# ------------------------------------------------------------- W602: some paths only


def test_a_key_one_arm_writes_and_the_other_does_not_names_the_path() -> None:
    source = HEADER + (
        "node check = typed_style\n\n"
        "analyze ? syntax_ok -> score : style\n"
        "style -> check\n"
        "score -> check\n"
        "check ? score > 80 -> end : end\n"
    )
    [problem] = problems(source)
    assert (problem.code, problem.message, problem.help) == (
        "W602",
        "`score` is read on line 11, but the path `start → analyze → style → check` "
        "never writes it",
        "guard the read with `exists(score)` or `default(score, VALUE)`",
    )
    assert not problem.is_error


def test_a_key_first_written_inside_a_loop_is_missing_on_the_first_pass() -> None:
    source = HEADER + (
        "analyze -> style -> score\nscore ? attempts < 3 -> refine : end\nrefine -> analyze\n"
    )
    assert found(source) == [
        "W602 7:9 `attempts` is read on line 7, but the path "
        "`start → analyze → style → score` never writes it"
    ]
    # Read where the loop has certainly written it: nothing to say.
    looped = HEADER + "start -> refine\nrefine -> score\nscore ? attempts < 3 -> refine : end\n"
    assert found(looped) == []


def test_a_tool_read_on_some_paths_only_is_a_warning_at_the_tool() -> None:
    source = (
        "state code: str\n\n" + HEADER + "analyze ? syntax_ok -> score : review\nscore -> review\n"
        "review -> end\n"
    )
    assert found(source) == [
        "W602 7:16 `score` is read on line 7 by tool `typed_review`, but the path "
        "`start → analyze → review` never writes it"
    ]


def test_a_maybe_write_is_a_maybe() -> None:
    tools = {
        **fake_tools(),
        "maybe": ToolSpec("maybe", writes=(KeyContract("extra", INT, required=False),)),
    }
    source = "node m = maybe\n\nm ? extra > 1 -> end : end\n"
    assert found(source, tools) == [
        "W602 3:5 `extra` is read on line 3, but the path `start → m` never writes it"
    ]


def test_a_long_path_is_shown_by_its_ends() -> None:
    chain = " -> ".join(f"s{i}" for i in range(1, 20))
    source = "node s0 = typed_analyze\nnode style = typed_style\nnode check = typed_score\n\n"
    source += f"s0 ? syntax_ok -> style : s1\n{chain} -> check\nstyle -> check\n"
    source += "check ? len(issues) > 0 -> end : end\n"
    tools = {**fake_tools(), **{f"s{i}": ToolSpec(f"s{i}", writes=()) for i in range(1, 20)}}
    assert found(source, tools) == [
        "W602 8:13 `issues` is read on line 8, but the path "
        "`start → s0 → s1 → s2 → … → s17 → s18 → s19 → check` never writes it"
    ]


# ------------------------------------------------------- unknown tools, no tool table


def test_after_a_tool_without_a_contract_every_key_may_be_there() -> None:
    # `analyze` (fake_tools) declares no writes: it may write anything.
    assert found("analyze -> score\nscore ? anything > 1 -> end : end\n") == []
    assert found("node s = typed_score\n\nanalyze -> s\ns ? anything -> end : end\n") == []


def test_a_path_around_the_unknown_tool_is_still_reported() -> None:
    source = (
        "node a = typed_analyze\nnode s = typed_score\n\n"
        "a ? syntax_ok -> analyze : s\nanalyze -> s\ns ? wild > 1 -> end : end\n"
    )
    assert found(source) == [
        "W602 6:5 `wild` is read on line 6, but the path `start → a → s` never writes it"
    ]


def test_without_a_tool_table_nothing_is_known_about_writes() -> None:
    source = HEADER + "analyze -> score\nscore ? syntax_okk and True -> end : end\n"
    assert found(source, untooled=True) == []
    # Declared types still type the conditions.
    typed = "state n: int = 0\n\na ? n + true > 1 -> end : end\n"
    assert [line.split()[0] for line in found(typed, untooled=True)] == ["E303"]


def test_the_keys_tools_require_are_the_input_of_an_untyped_flow() -> None:
    # `code` is never written, but a flow without `state` declarations takes it as input.
    assert found(HEADER + "analyze ? code == '' -> end : end\n") == []
    # Once the flow declares its state, the input is what it declares.
    typed = "state other: int = 0\n\n" + HEADER + "analyze -> end\n"
    assert found(typed) == [
        "E601 3:16 tool `typed_analyze` reads `code`, but no path to node `analyze` writes it"
    ]


def test_unreachable_nodes_are_not_checked_for_reads() -> None:
    source = HEADER + "analyze -> end\nscore ? nope -> end : end\n"
    assert found(source) == []


# --------------------------------------------------------------- E603: write types


def test_a_write_that_contradicts_the_declaration_is_an_error_at_the_tool() -> None:
    source = "state code: str\nstate score: str = ''\n\nnode s = typed_score\n\ns -> end\n"
    checked = check_source(source, tools=fake_tools())
    [problem] = checked.diagnostics
    assert (problem.code, problem.message, problem.help) == (
        "E603",
        "tool `typed_score` writes `score` as int, but the state declares it str (line 2)",
        "declare `state score: int`, or change the tool",
    )
    assert (problem.span.line, problem.span.column) == (4, 10)
    # int fits float, and a declared key fits a nullable declaration.
    for declared in ("float", "int?", "any"):
        ok = f"state code: str\nstate score: {declared} = 0\n\nnode s = typed_score\n\ns -> end\n"
        assert found(ok) == [], declared


# ------------------------------------------------------------------ typed conditions


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("syntax_ok in 5", "`in` needs a list, a string or an object on the right, not int"),
        ("syntax_ok < true", "cannot compare bool with bool using `<`"),
        ("score + true > 1", "cannot add int and bool"),
        ("len(score) > 1", "len() needs a string, a list or an object, not int"),
        ("issues + 1 == []", "cannot add list and int"),
        ("nope_free in 5", "`in` needs a list, a string or an object on the right, not int"),
    ],
)
def test_conditions_are_typed_by_what_the_tools_write(condition: str, message: str) -> None:
    source = "state code: str\nstate nope_free: any = 1\n\n" + HEADER
    source += f"analyze -> style -> score\nscore ? {condition} -> end : end\n"
    assert [line.split(" ", 2)[2] for line in found(source)] == [message]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("x in 5", "`in` needs a list, a string or an object on the right, not int"),
        ("x + true > 1", "cannot add any and bool"),
        ("x < true", "cannot compare any with bool using `<`"),
        ("-true < x", "unary `-` needs a number, not bool"),
        ("min(x, true) > 1", "min() needs numbers or strings, not any, bool"),
    ],
)
def test_an_operand_of_unknown_type_does_not_hide_the_known_one(
    condition: str, message: str
) -> None:
    source = f"a ? {condition} -> end : end\n"
    assert [line.split(" ", 2)[2] for line in found(source, untooled=True)] == [message]


def test_operations_that_work_for_some_value_are_not_reported() -> None:
    for condition in ("x == true", "x in [1]", "x + 1 > 2", "x < 'a'", "not x", "len(x) > 0"):
        assert found(f"a ? {condition} -> end : end\n", untooled=True) == [], condition


def test_a_condition_of_a_known_non_bool_type_is_e305() -> None:
    assert codes(HEADER + "analyze -> score\nscore ? score -> end : end\n") == ["E305"]


def test_types_joined_over_paths_of_different_writers_are_any() -> None:
    tools = {
        **fake_tools(),
        "as_int": ToolSpec("as_int", writes=(KeyContract("v", INT),)),
        "as_str": ToolSpec("as_str", writes=(KeyContract("v", STR),)),
        "flag": ToolSpec("flag", writes=(KeyContract("f", BOOL),)),
    }
    source = "flag ? f -> as_int : as_str\nas_int -> join\nas_str -> join\n"
    source += "node join = flag\n\njoin ? v + 1 > 2 -> end : end\n"
    assert found(source, tools) == []


def test_a_declared_type_types_the_paths_into_it() -> None:
    source = "state review: dict[int] = {}\nstate items: list[str] = []\n\n"
    source += "a ? review.score < 'x' or items[0] > 1 -> end : end\n"
    assert [line.split(" ", 2)[2] for line in found(source, untooled=True)] == [
        "cannot compare int with string using `<`",
        "cannot compare string with int using `>`",
    ]


# ---------------------------------------------------------------- folding errors


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("1 / 0 == 1", "division by zero"),
        ("score > min([])", "min() of an empty list"),
        ('"a" < 1 or 1 / 0 == 1', "division by zero"),
    ],
)
def test_folding_errors_are_diagnostics_even_next_to_type_errors(
    condition: str, message: str
) -> None:
    checked = check_source(f"a ? {condition} -> end : end\n")
    assert message in [d.message for d in checked.diagnostics if d.code == "E303"]


def test_a_type_error_met_again_by_folding_is_reported_once() -> None:
    assert [line.split()[0] for line in found('a ? "a" < 1 -> end : end\n', untooled=True)] == [
        "E303"
    ]


# ------------------------------------------------------------------- constant arms


def test_a_constant_false_arm_is_an_error() -> None:
    checked = check_source("a ? false -> end : b\nb -> end\n")
    assert [(d.code, d.message, d.is_error) for d in checked.diagnostics] == [
        ("E308", "the condition is always false, so this arm never leads to `end`", True)
    ]


def test_a_constant_true_arm_with_arms_after_it_is_an_error() -> None:
    checked = check_source("a ? 1 < 2 -> b : x -> c : y -> c : end\nb -> end\nc -> end\n")
    assert [(d.code, d.message) for d in checked.diagnostics] == [
        (
            "E309",
            "the condition is always true, so the arms after it (to `c`) can never be taken",
        )
    ]


def test_a_constant_true_last_arm_is_a_warning() -> None:
    checked = check_source("a ? x -> end : true -> b : end\nb -> end\n")
    assert [(d.code, d.is_error) for d in checked.diagnostics] == [("W504", False)]


# ------------------------------------------------------------------- covered arms


@pytest.mark.parametrize(
    ("first", "later"),
    [
        ("score < 80", "score < 50"),
        ("score < 80", "score < 80.0"),
        ("score <= 80", "score < 80"),
        ("score < 80", "score <= 79"),
        ("80 > score", "score < 50"),
        ("score > 10", "score >= 11"),
        ("score >= -5", "score > -5"),
        ("score != 3", "score < 3"),
        ("score != 3", "score > 3"),
        ("score < 80", "score == 12"),
        ("score in [1, 2, 3]", "score == 2"),
        ("score != 4", "score in [1, 2, 3]"),
        ("name == 'a'", "name == 'a'"),
        ("name != 'b'", "name == 'a'"),
        ("ok", "ok and score < 3"),
        ("score < 80 or ok", "score < 50"),
        ("score < 80", "score < 50 or score < 60"),
        ("not (score < 50)", "not (score < 80)"),
        ("score < 80 and ok", "ok and score < 50"),
    ],
)
def test_an_arm_an_earlier_one_covers_is_a_warning(first: str, later: str) -> None:
    checked = check_source(f"a ? {first} -> b : {later} -> c : end\nb -> end\nc -> end\n")
    assert [d.code for d in checked.diagnostics] == ["W505"], (first, later)


@pytest.mark.parametrize(
    ("first", "later"),
    [
        ("score < 50", "score < 80"),
        ("score < 80", "score <= 80"),
        ("score < 80", "score == 80"),
        ("score < 80", "score > 50"),
        ("score < 80", "score == 'a'"),
        ("score == 1", "score == true"),
        ("score != 3", "score <= 3"),
        ("score < 80", "other < 50"),
        ("score < 80 and ok", "score < 50"),
        ("score < 80", "score < 50 or ok"),
        ("score in [1, 2, 90]", "score < 80"),
    ],
)
def test_an_arm_that_is_not_covered_is_not_reported(first: str, later: str) -> None:
    source = f"a ? {first} -> b : {later} -> c : end\nb -> end\nc -> end\n"
    assert check_source(source).diagnostics == (), (first, later)


def test_the_covered_arm_message_names_the_earlier_arm() -> None:
    source = "a ? score < 80 -> b :\n    score < 50 -> c :\n    end\nb -> end\nc -> end\n"
    [problem] = check_source(source).diagnostics
    assert (problem.message, problem.help) == (
        "this arm is never taken: whenever `score < 50` is true, the earlier arm "
        "`score < 80` on line 1 is true too",
        "remove the arm, or move it before the arm `score < 80`",
    )
    assert problem.span.line == 2


def condition(text: str) -> ast.Expr:
    """The first condition of `a ? TEXT -> b : end`."""
    statement = parse(f"a ? {text} -> b : end\n").statements[0]
    assert isinstance(statement, ast.Route) and statement.branch is not None
    return statement.branch.arms[0].condition


def test_coverage_stops_at_its_budget() -> None:
    p, q = condition("x < 0"), condition("(x < 1 or y < 1) and (x < 2 or y < 2)")
    assert Coverage().implies(p, q)
    assert not Coverage(budget=3).implies(p, q)


# ------------------------------------------------------------------------- E402


def test_max_steps_below_the_shortest_run_is_an_error_at_the_setting() -> None:
    source = "set max_steps = 2\n\nanalyze -> style -> score\nscore ? x -> analyze : end\n"
    checked = check_source(source)
    [problem] = checked.diagnostics
    assert (problem.code, problem.message, problem.help) == (
        "E402",
        "max_steps is 2, but the shortest run takes 3 steps: "
        "`start → analyze → style → score → end`",
        "raise max_steps to at least 3: `set max_steps = 3`",
    )
    assert (problem.span.line, problem.span.column) == (1, 1)
    assert check_source(source.replace("= 2", "= 3")).diagnostics == ()


def test_a_run_may_end_at_a_node_without_a_route() -> None:
    source = "set max_steps = 1\n\na ? x -> b : c\nb -> end\n"
    assert [d.code for d in check_source(source).diagnostics] == ["E402", "W502"]
    # A run that goes from `a` straight to `end` takes one step.
    source = "set max_steps = 1\n\na ? x -> b : end\nb -> end\n"
    assert check_source(source).diagnostics == ()
    # `a` without a route ends the run after one step.
    assert [
        d.code for d in check_source("set max_steps = 1\n\nnode a = analyze\n").diagnostics
    ] == ["W502"]


def test_e402_is_checked_on_ir_documents_too() -> None:
    ir = compile_source("set max_steps = 5\n\na -> b -> end\n").ir.model_dump()
    ir["settings"]["max_steps"] = 1
    assert [d.code for d in check_ir(ir).diagnostics] == ["E402"]


# ---------------------------------------------------------------------- big flows


def test_a_long_chain_of_typed_reads_is_linear() -> None:
    count = 5_000
    tools = {f"t{i}": ToolSpec(f"t{i}", writes=(KeyContract(f"k{i}", BOOL),)) for i in range(count)}
    lines = [f"node n{i} = t{i}" for i in range(count)]
    lines += [f"n{i} ? k{i} and k{max(i - 1, 0)} -> n{i + 1} : end" for i in range(count - 1)]
    lines.append(f"n{count - 1} ? k0 and k4999 == True -> end : end")
    text = "\n".join(lines) + "\n"
    # A bit per key that is read, at every node: sets or dicts per node would be quadratic.
    assert [d.code for d in problems(text, tools)] == ["E601"]


def test_a_tool_that_reads_what_it_writes_is_missing_it_on_the_way_in() -> None:
    tools = {
        **fake_tools(),
        "bump": ToolSpec("bump", reads=(KeyContract("counter", INT),),
                         writes=(KeyContract("counter", INT),)),
    }  # fmt: skip
    source = "state code: str\n\nnode a = typed_analyze\n\n"
    source += "a ? syntax_ok -> bump : end\nbump ? counter < 3 -> bump : end\n"
    assert found(source, tools) == [
        "W602 5:18 `counter` is read on line 5 by tool `bump`, but the path "
        "`start → a → bump` never writes it"
    ]


def test_ir_documents_get_the_data_flow_checks() -> None:
    source = "node analyze = typed_analyze\n\nanalyze ? syntax_ok -> end : end\n"
    document = compile_source(source, tools=fake_tools()).ir.model_dump()
    document["routes"]["analyze"]["arms"][0]["condition"]["path"] = ["syntax_okk"]
    checked = check_ir(document, tools=fake_tools())
    assert [(d.code, d.help) for d in checked.diagnostics] == [
        ("E601", "did you mean `syntax_ok`?")
    ]


def test_not_of_anything_is_a_bool() -> None:
    found_here = found("a ? (not x) + 1 > 0 -> end : end\n", untooled=True)
    assert [line.split(" ", 2)[2] for line in found_here] == ["cannot add bool and int"]


# -- error routes: the target sees `error`, and none of the failed node's writes ----------


def test_an_error_route_writes_error_for_its_target() -> None:
    source = HEADER + (
        "state code: str\n"
        "node fetch = typed_analyze with on_error = fallback\nnode fallback = typed_style\n"
        "fetch ? syntax_ok -> end : end\n"
        'fallback ? error.code == "timeout" -> end : end\n'
    )
    assert found(source) == []


def test_the_target_of_an_error_route_does_not_see_the_failed_nodes_writes() -> None:
    source = HEADER + (
        "state code: str\n"
        "node fetch = typed_analyze with on_error = fallback\nnode fallback = typed_style\n"
        "fetch -> fallback\n"
        "fallback ? syntax_ok -> end : end\n"
    )
    assert found(source) == [
        "W602 10:12 `syntax_ok` is read on line 10, but the path "
        "`start → fetch → fallback` never writes it"
    ]


def test_error_is_only_written_on_the_error_route() -> None:
    source = HEADER + (
        "state code: str\n"
        "node fetch = typed_analyze with on_error = fallback\nnode fallback = typed_style\n"
        "fetch -> check\n"
        "fallback -> check\n"
        "node check = typed_analyze\n"
        "check ? exists(error) -> end : end\n"
    )
    assert found(source) == []
    source = source.replace("exists(error)", 'error.code == "x"')
    assert found(source) == [
        "W602 12:9 `error` is read on line 12, but the path `start → fetch → check` never writes it"
    ]


def test_a_declared_error_key_must_hold_the_error() -> None:
    source = (
        'state code: str\nstate error: str = ""\n'
        "node fetch = typed_analyze with on_error = fallback\nnode fallback = typed_style\n"
        "fetch -> end\nfallback -> end\n"
    )
    assert found(source) == [
        "E603 3:44 the error route of node `fetch` writes `error` as a dict (code, message, "
        "node, attempts), but the state declares it str (line 2)"
    ]
    assert found(source.replace('str = ""', "dict? = null")) == []


# -- parallel branches: the join sees every branch's writes, a branch sees only its own ----


def test_the_join_sees_what_every_branch_wrote() -> None:
    source = HEADER + (
        "state code: str\n"
        "node score2 = typed_score\n"
        "analyze -> [style, refine] -> score2\n"
        "score2 ? style_ok and syntax_ok and attempts > 0 -> end : end\n"
    )
    assert found(source) == []


def test_a_branch_does_not_see_what_its_sibling_writes() -> None:
    source = (
        HEADER + "state code: str\nnode judge = typed_review\nanalyze -> [score, judge] -> end\n"
    )
    assert found(source) == [
        "E601 7:14 tool `typed_review` reads `score`, but no path to node `judge` writes it"
    ]
    # After `score` in its own branch, it does.
    assert found(source.replace("[score, judge]", "[score -> judge, style]")) == []


def test_keys_two_branches_write_need_a_reducer() -> None:
    source = (
        "state code: str\nstate issues: list[dict] = []\n"
        "node analyze = typed_analyze\nnode a = typed_style\nnode b = typed_style\n"
        "analyze -> [a, b] -> end\n"
    )
    assert found(source) == [
        "E135 6:1 `issues` is written by parallel branches after `analyze` (by `a` and `b`), "
        "and nothing says how to merge them",
        "E135 6:1 `style_ok` is written by parallel branches after `analyze` (by `a` and `b`), "
        "and nothing says how to merge them",
    ]
    source = source.replace("= []", "= [] by extend") + "state style_ok: bool = true by replace\n"
    assert found(source) == []


# -- maps and waits --------------------------------------------------------------------------


def test_a_map_reads_its_list_and_gives_its_tool_the_item() -> None:
    # `typed_analyze` reads `code`: each call gets it as the item.
    source = (
        "state issues: list[str] = []\n"
        "node f = for code in issues: typed_analyze\n"
        "f ? len(f) > 0 -> end : end\n"
    )
    assert found(source) == []
    # In a typed flow, a list nothing writes or declares is an error.
    assert found(source.replace("state issues: list[str] = []", "state n: int = 0")) == [
        "E601 2:22 node `f` maps over `issues`, but no path to it writes `issues`"
    ]


def test_a_map_writes_a_list_under_its_name() -> None:
    source = (
        "state code: str\nstate issues: list = []\nstate f: int = 0\n"
        "node f = for i in issues: typed_analyze\nf -> end\n"
    )
    assert found(source) == [
        "E603 4:10 the map `f` collects its results in `f`, a list, but the state declares it "
        "int (line 3)"
    ]


def test_what_a_wait_is_resumed_with_is_not_known() -> None:
    # After a wait, reads are not reported: the input it is resumed with may hold anything.
    source = 'node w = wait("approval")\nw ? approved and reviewer != null -> end : end\n'
    assert found(source) == []
