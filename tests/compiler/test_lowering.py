"""AST -> Program: default start, node order, tools by use, spans of routes."""

from __future__ import annotations

import pytest

from flowc.compiler import check_source
from flowc.compiler.program import Branch, BranchPlace, Goto, Parallel, Policy, Program, WaitSpec


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
        (
            "E113",
            "unknown policy `jitter`",
            "the policies are `timeout`, `retries`, `backoff`, `on_error`",
        ),
    ]
    assert [d.span.column for d in checked.errors] == [20, 32, 45]


def test_an_unknown_setting_suggests_the_new_names_too() -> None:
    checked = check_source("set retrie = 2\nset max_step = 3\nset nope = 1\na -> end\n")
    assert [(d.code, d.help) for d in checked.errors] == [
        ("E106", "did you mean `retries`?"),
        ("E106", "did you mean `max_steps`?"),
        ("E106", "known settings: max_steps, max_parallel, timeout, retries, backoff"),
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


# -- error routes: `with on_error = NODE` -------------------------------------------------


def test_an_error_route_names_a_node_or_end() -> None:
    lowered = program(
        "node fetch = f with retries = 2, on_error = fallback\n"
        "node quiet = g with on_error = end\n"
        "fetch -> quiet -> end\nfallback -> end\n"
    )
    fetch, quiet = lowered.nodes["fetch"], lowered.nodes["quiet"]
    assert fetch.policy is not None and fetch.policy.on_error == "fallback"
    assert fetch.policy.on_error_span.column == 45
    assert quiet.policy is not None and quiet.policy.on_error == "end"
    # The route's first node is still the start, though `fallback` is named before it.
    assert lowered.start == "fetch"
    assert "fallback" in lowered.mentioned


def test_a_node_named_only_by_an_error_route_is_used_and_reachable() -> None:
    checked = check_source("node fetch = f with on_error = fallback\nfetch -> end\n")
    assert [d.code for d in checked.diagnostics] == ["W502"]  # fallback: no edge out
    assert checked.diagnostics[0].message.startswith("node `fallback` has no outgoing edge")


@pytest.mark.parametrize(
    ("text", "code", "message", "help"),
    [
        (
            'node a = f with on_error = "b"\na -> end\nb -> end\n',
            "E115",
            "`on_error` must name the node a failed step goes to, or `end`",
            "write the node's name without quotes: `on_error = b`",
        ),
        (
            "node a = f with on_error = 3\na -> end\n",
            "E115",
            "`on_error` must name the node a failed step goes to, or `end`",
            "for example `on_error = fallback`",
        ),
        (
            "node a = f with on_error = start\na -> end\n",
            "E103",
            "nothing can lead into `start`",
            "`on_error` names the node a failed step goes to, or `end`",
        ),
        (
            "node a = f with on_error = b, on_error = c\na -> end\nb -> end\nc -> end\n",
            "E114",
            "policy `on_error` is given twice",
            "keep one `on_error = ...`",
        ),
        (
            "node a = f with timeout = fast\na -> end\n",
            "E115",
            "`timeout` must be a number of seconds greater than 0 and at most 604,800",
            None,
        ),
        (
            "node a = f with on_eror = b\na -> end\nb -> end\n",
            "E113",
            "unknown policy `on_eror`",
            "did you mean `on_error`?",
        ),
        (
            "set on_error = b\na -> end\n",
            "E010",
            "expected a value after `=`, found `b`",
            "`on_error` is a node's policy: `node NAME = TOOL with on_error = b`",
        ),
        (
            "set on_error = 1\na -> end\n",
            "E106",
            "`on_error` is a node's policy, not a setting of the flow",
            "give it to each node that may fail: `node NAME = TOOL with on_error = NODE`",
        ),
    ],
)
def test_bad_error_routes(text: str, code: str, message: str, help: str | None) -> None:
    first = check_source(text).errors[0]
    assert (first.code, first.message, first.help) == (code, message, help)


# -- parallel branches: `a -> [b -> b2, c] -> d` ------------------------------------------


def test_parallel_branches_lower_to_a_fork_and_its_places() -> None:
    checked = check_source("a -> [b -> b2, c] -> d\nd -> end\n")
    assert not checked.diagnostics
    lowered = checked.program
    assert lowered is not None
    route = lowered.routes["a"]
    assert isinstance(route, Parallel)
    assert (route.branches, route.join) == ((("b", "b2"), ("c",)), "d")
    assert list(lowered.nodes) == ["a", "b", "b2", "c", "d"]
    assert lowered.start == "a"
    assert lowered.branch_of["b"] == BranchPlace("a", 0, "b2", False)
    assert lowered.branch_of["b2"] == BranchPlace("a", 0, "d", True)
    assert lowered.branch_of["c"] == BranchPlace("a", 1, "d", True)
    assert lowered.successors("a") == ("b", "c")
    assert lowered.successors("b2") == ("d",)


@pytest.mark.parametrize(
    ("text", "code", "message", "help"),
    [
        (
            "a -> [b] -> d\n",
            "E131",
            "parallel branches need two branches or more",
            "to run them one after the other, write `a -> b -> d`",
        ),
        (
            "start -> [b, c] -> d\n",
            "E130",
            "parallel branches start after a node",
            "write the node they start after first: `NODE -> [b, c] -> JOIN`",
        ),
        (
            "a -> [b, c]\n",
            "E130",
            "parallel branches join at a node: name it after `]`",
            "for example `-> [b, c] -> JOIN`, or `-> end` to end the run when both are done",
        ),
        (
            "a -> [b, c] -> [d, e] -> f\n",
            "E130",
            "parallel branches join at a node: name it after `]`",
            "join them at a node before the next branches: `[b, c] -> JOIN -> [d, e]`",
        ),
        (
            "a -> [b, end] -> d\n",
            "E132",
            "`end` cannot be in a parallel branch",
            "a branch is a chain of nodes; name where they join after `]`",
        ),
        (
            "a -> [b, c] -> d\nx -> [b, e] -> d\n",
            "E132",
            "node `b` is in a parallel branch already (after `a`)",
            "a node runs in one branch: declare another node for the same tool, `node b_2 = TOOL`",
        ),
        (
            "a -> [b, c] -> d\nb -> x\n",
            "E133",
            "node `b` runs in a parallel branch after `a`, so it cannot have a route of its own",
            "put the nodes that follow it in its branch: `[b -> b2, c]`",
        ),
        (
            "a -> [b, c] -> d\nx -> c\n",
            "E134",
            "`x` leads to `c`, which runs in a parallel branch after `a`: only its branch "
            "can lead to it",
            "declare another node for the same tool: `node c_2 = TOOL`",
        ),
        (
            "node b = t with on_error = c\na -> [b, c] -> d\n",
            "E134",
            "`b` fails over to `c`, which runs in a parallel branch after `a`: only its branch "
            "can lead to it",
            "declare another node for the same tool: `node c_2 = TOOL`",
        ),
        (
            "set max_parallel = 0\na -> end\n",
            "E107",
            "`max_parallel` must be a whole number from 1 to 1,000",
            None,
        ),
    ],
)
def test_bad_parallel_branches(text: str, code: str, message: str, help: str | None) -> None:
    first = check_source(text).errors[0]
    assert (first.code, first.message, first.help) == (code, message, help)


def test_a_refused_fork_reports_only_itself() -> None:
    assert [d.code for d in check_source("a -> [b] -> d\n").diagnostics] == ["E131"]


# -- reducers: `state KEY: TYPE = DEFAULT by REDUCER` --------------------------------------


def test_a_reducer_is_kept_with_its_declaration() -> None:
    lowered = program("state issues: list[dict] = [] by extend\nstate n: int by sum\na -> end\n")
    assert lowered.state["issues"].reducer == "extend"
    assert lowered.state["n"].reducer == "sum"
    assert lowered.state["n"].required


@pytest.mark.parametrize(
    ("text", "code", "message", "help"),
    [
        (
            "state issues: list = [] by apend\na -> end\n",
            "E123",
            "unknown reducer `apend`",
            "did you mean `append`?",
        ),
        (
            "state issues: list = [] by concat\na -> end\n",
            "E123",
            "unknown reducer `concat`",
            "the reducers are `append`, `extend`, `merge`, `sum`, `min`, `max`, `replace`",
        ),
        (
            "state issues: list = [] by sum\na -> end\n",
            "E124",
            "`sum` adds each branch's number: it needs a key of type float or int, not list",
            "for list, use `append` or `extend`",
        ),
        (
            "state ok: bool = false by max\na -> end\n",
            "E124",
            "`max` keeps the greatest: it needs a key of type float or int or str, not bool",
            "use `replace`, or change the key's type",
        ),
    ],
)
def test_bad_reducers(text: str, code: str, message: str, help: str) -> None:
    first = check_source(text).errors[0]
    assert (first.code, first.message, first.help) == (code, message, help)


# -- maps and waits -----------------------------------------------------------------------


def test_a_map_and_a_wait_lower_to_their_specs() -> None:
    lowered = program(
        "node fixes = for issue in issues: fix(limit = 3) with retries = 1\n"
        'node ok = wait("approval", timeout = 86400) with on_error = end\n'
        "fixes -> ok -> end\n"
    )
    fixes, ok = lowered.nodes["fixes"], lowered.nodes["ok"]
    assert fixes.map is not None and (fixes.map.item, fixes.map.over) == ("issue", "issues")
    assert (fixes.tool, fixes.args, fixes.wait) == ("fix", {"limit": 3}, None)
    assert ok.wait == WaitSpec("approval", 86400.0)
    assert (ok.tool, ok.args, ok.map) == ("wait", {}, None)
    assert ok.policy is not None and ok.policy.on_error == "end"


ONE_STRING = "`wait` takes one string: the name of what the run waits for"


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("node a = wait()\na -> end\n", "E140", ONE_STRING),
        ('node a = wait("x", "y")\na -> end\n', "E140", ONE_STRING),
        ('node a = wait("")\na -> end\n', "E140", ONE_STRING),
        ('node a = wait("x", timeout = 0)\na -> end\n', "E140",
         "a wait's `timeout` must be a number of seconds greater than 0 and at most 31,622,400"),
        ('node a = wait("x", timeout = true)\na -> end\n', "E140",
         "a wait's `timeout` must be a number of seconds greater than 0 and at most 31,622,400"),
        ('node a = wait("x") with timeout = 5\na -> end\n', "E140",
         "a wait has no `timeout` policy: it runs no tool"),
        ('node a = for i in xs: wait("x")\na -> end\n', "E140",
         "a map cannot wait: `for` runs a tool once per item"),
        ("node a = t(1)\na -> end\n", "E116", "tool `t` takes named arguments only"),
    ],
)  # fmt: skip
def test_bad_waits_and_positional_values(text: str, code: str, message: str) -> None:
    first = check_source(text).errors[0]
    assert (first.code, first.message) == (code, message)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("end -> [b, c] -> d\n", "E104"),  # found by `make fuzz`: the checks crashed
        ("a -> x\na -> [b, c] -> d\n", "E102"),
        ("a -> [b, c] -> d\na -> [e, f] -> g\n", "E102"),
    ],
)
def test_a_refused_fork_leaves_no_branches_behind(text: str, code: str) -> None:
    checked = check_source(text)
    assert [d.code for d in checked.errors] == [code]
    assert checked.program is not None
    assert all(place.fork in checked.program.routes for place in checked.program.branch_of.values())


def test_a_node_named_wait_without_a_declaration_is_refused() -> None:
    (problem,) = check_source("a -> wait -> end\n").errors
    assert (problem.code, problem.span.column) == ("E140", 6)
    assert problem.help == 'declare what it waits for: `node wait = wait("approval")`'
