"""AST -> Program, in one pass: nodes, routes, settings, and the structural errors.

Structural errors are what the Program cannot represent: a node declared twice, two
routing rules on one node, edges into `start` or out of `end`, unknown settings and
policies, and values they cannot take.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from itertools import pairwise

from flowc.compiler.policies import POLICY_RULES, SETTING_RULES
from flowc.compiler.program import (
    DEFAULT_BACKOFF,
    DEFAULT_MAX_STEPS,
    DEFAULT_RETRIES,
    END,
    MAX_WAIT,
    POLICIES,
    START,
    SUBFLOW,
    WAIT,
    Arm,
    Branch,
    BranchPlace,
    FlowSpec,
    Goto,
    MapSpec,
    Node,
    Parallel,
    Policy,
    Program,
    Route,
    StateField,
    WaitSpec,
)
from flowc.compiler.reducers import REDUCERS
from flowc.compiler.suggestions import did_you_mean
from flowc.compiler.types import FlowType, from_ref, problems_with
from flowc.dsl import ast
from flowc.dsl.diagnostics import WHOLE_TEXT, Diagnostic, Span, error

#: The policies that name a node rather than a value: no flow-wide setting has them.
NODE_POLICIES = ("on_error",)
SETTINGS = (
    "max_steps",
    "max_parallel",
    *(name for name in POLICIES if name not in NODE_POLICIES),
)


def source_hash(text: str) -> str:
    """The hash recorded in the IR: `sha256:` and the hex digest of the UTF-8 text."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class _Lowering:
    problems: list[Diagnostic] = field(default_factory=list)
    name: str | None = None
    header_seen: bool = False
    settings: dict[str, ast.Value] = field(default_factory=dict)
    settings_seen: dict[str, Span] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    declared: dict[str, ast.NodeDecl] = field(default_factory=dict)
    first_mention: dict[str, Span] = field(default_factory=dict)
    mentioned: set[str] = field(default_factory=set)
    routes: dict[str, Route] = field(default_factory=dict)
    first_routed: str | None = None
    start: str | None = None
    start_span: Span = WHOLE_TEXT
    state: dict[str, StateField] = field(default_factory=dict)
    rejected: dict[str, list[str]] = field(default_factory=dict)
    branch_of: dict[str, BranchPlace] = field(default_factory=dict)
    maps: dict[str, MapSpec] = field(default_factory=dict)
    waits: dict[str, WaitSpec] = field(default_factory=dict)
    subflows: dict[str, FlowSpec] = field(default_factory=dict)

    def state_decl(self, statement: ast.StateDecl) -> None:
        name = statement.name.text
        first = self.state.get(name)
        if first is not None:
            self.problems.append(
                error(
                    "E121",
                    f"state key `{name}` is declared twice (first on line {first.span.line})",
                    statement.name.span,
                    help="keep one declaration",
                )
            )
            return
        flow_type, problems = from_ref(statement.type)
        self.problems += problems
        if flow_type is None:
            return
        default = statement.default
        if default is not None:
            found = problems_with(flow_type, default.value, limit=1)
            if found:
                where, message = found[0]
                at = f" at `{where}`" if where else ""
                self.problems.append(
                    error(
                        "E122",
                        f"the default of `{name}` does not fit its type `{flow_type}`{at}: "
                        f"{message}",
                        default.span,
                        help=f"make the type nullable: `{flow_type.or_null()}`"
                        if default.value is None
                        else f"give a default of type `{flow_type}`, or change the type",
                    )
                )
                return
        reducer = statement.reducer
        if reducer is not None and not self._reducer_fits(reducer, flow_type):
            return
        self.state[name] = StateField(
            name,
            flow_type,
            None if default is None else default.value,
            default is None,
            statement.span,
            statement.type.span,
            None if reducer is None else reducer.text,
        )

    def _reducer_fits(self, reducer: ast.Name, flow_type: FlowType) -> bool:
        """E123: an unknown reducer; E124: one that does not take the key's type."""
        known = REDUCERS.get(reducer.text)
        if known is None:
            self.problems.append(
                error(
                    "E123",
                    f"unknown reducer `{reducer.text}`",
                    reducer.span,
                    help=did_you_mean(reducer.text, REDUCERS)
                    or f"the reducers are {', '.join(f'`{r}`' for r in REDUCERS)}",
                )
            )
            return False
        problem = known.problem(flow_type)
        if problem is not None:
            fitting = [r.name for r in REDUCERS.values() if r.kinds and not r.problem(flow_type)]
            self.problems.append(
                error(
                    "E124",
                    problem,
                    reducer.span,
                    help=f"for {flow_type}, use {' or '.join(f'`{r}`' for r in fitting)}"
                    if fitting
                    else "use `replace`, or change the key's type",
                )
            )
            return False
        return True

    def header(self, statement: ast.Header, index: int) -> None:
        if self.header_seen or index != 0:
            self.problems.append(
                error(
                    "E109",
                    "`flow NAME` must be the first statement, and there can be only one",
                    statement.span,
                )
            )
        self.header_seen = True
        self.name = statement.name.text

    def setting(self, statement: ast.Setting) -> None:
        name, value = statement.name.text, statement.value.value
        if name in NODE_POLICIES:
            self.problems.append(
                error(
                    "E106",
                    f"`{name}` is a node's policy, not a setting of the flow",
                    statement.name.span,
                    help="give it to each node that may fail: "
                    f"`node NAME = TOOL with {name} = NODE`",
                )
            )
            return
        if name not in SETTINGS:
            self.problems.append(
                error(
                    "E106",
                    f"unknown setting `{name}`",
                    statement.name.span,
                    help=did_you_mean(name, SETTINGS) or f"known settings: {', '.join(SETTINGS)}",
                )
            )
            return
        if name in self.settings_seen:
            first = self.settings_seen[name]
            self.problems.append(
                error(
                    "E108",
                    f"setting `{name}` is set twice (first on line {first.line})",
                    statement.span,
                )
            )
            return
        self.settings_seen[name] = statement.span
        rule = SETTING_RULES[name]
        if not rule.accepts(value):
            self.problems.append(error("E107", rule.message, statement.value.span))
            return
        self.settings[name] = rule.normal(value)

    def node_decl(self, statement: ast.NodeDecl) -> None:
        name = statement.name.text
        if name in self.declared:
            first = self.declared[name].span
            self.problems.append(
                error(
                    "E101",
                    f"node `{name}` is declared twice (first on line {first.line})",
                    statement.name.span,
                    help="give one of them another name",
                )
            )
            return
        self.declared[name] = statement
        self.first_mention.setdefault(name, statement.name.span)
        seen: dict[str, Span] = {}
        for arg in statement.args or ():
            if arg.name.text in seen:
                self.problems.append(
                    error(
                        "E112",
                        f"argument `{arg.name.text}` is given twice",
                        arg.name.span,
                    )
                )
            seen[arg.name.text] = arg.span
        if statement.policies:
            self.policies[name] = self._policy(statement.policies)
        if statement.over is not None:
            over = statement.over
            self.maps[name] = MapSpec(over.item.text, over.source.text, over.span, over.source.span)
        if statement.subflow:
            self.subflows[name] = self._subflow(statement)
        elif statement.tool.text == WAIT and statement.over is not None:
            self.problems.append(
                error(
                    "E140",
                    "a map cannot wait: `for` runs a tool once per item",
                    statement.tool.span,
                    help="wait in a node of its own, before or after the map",
                )
            )
        elif statement.tool.text == WAIT:
            self.waits[name] = self._wait(statement)
        elif statement.positional:
            self.problems.append(
                error(
                    "E116",
                    f"tool `{statement.tool.text}` takes named arguments only",
                    statement.positional[0].span,
                    help="name it: `NAME = VALUE`",
                )
            )

    def _subflow(self, statement: ast.NodeDecl) -> FlowSpec:
        """`flow NAME` or `flow NAME(graph_id = "...")`: E152 for anything else."""
        name = statement.tool.text
        graph_id: str | None = None
        for unnamed in statement.positional:
            self.problems.append(
                error(
                    "E152",
                    "a sub-flow takes no values without a name",
                    unnamed.span,
                    help=f'pin a stored definition with `flow {name}(graph_id = "...")`',
                )
            )
        for arg in statement.args or ():
            value = arg.value.value
            if arg.name.text != "graph_id":
                self.problems.append(
                    error(
                        "E152",
                        f"a sub-flow has no argument `{arg.name.text}`: it takes its input "
                        "from the state",
                        arg.name.span,
                        help=did_you_mean(arg.name.text, ["graph_id"])
                        or "its only argument is `graph_id`, to pin a stored definition",
                    )
                )
            elif not isinstance(value, str) or not _is_graph_id(value):
                self.problems.append(
                    error(
                        "E152",
                        "a sub-flow's `graph_id` is the id of a stored graph, a UUID in a string",
                        arg.value.span,
                        help='for example `graph_id = "0b7e3f2c-5d1a-4c7e-9f57-2a4c1d6e8b90"`',
                    )
                )
            else:
                graph_id = str(uuid.UUID(value))
        for policy in statement.policies:
            if policy.name.text in ("timeout", "retries", "backoff"):
                self.problems.append(
                    error(
                        "E152",
                        f"a sub-flow has no `{policy.name.text}` policy: its nodes have their own",
                        policy.name.span,
                        help=f"set it in `{name}`; `with on_error = NODE` is what a sub-flow "
                        "node takes",
                    )
                )
        return FlowSpec(name, graph_id, statement.tool.span)

    def _wait(self, statement: ast.NodeDecl) -> WaitSpec:
        """`wait("NAME", timeout = SECONDS)`: E140 for anything else."""
        problems: list[Diagnostic] = []
        given = statement.positional
        if len(given) != 1 or not isinstance(given[0].value, str) or not given[0].value:
            where = given[1].span if len(given) > 1 else given[0].span if given else None
            problems.append(
                error(
                    "E140",
                    "`wait` takes one string: the name of what the run waits for",
                    where or statement.tool.span,
                    help='for example `wait("approval", timeout = 86400)`',
                )
            )
        timeout: float | None = None
        for arg in statement.args or ():
            value = arg.value.value
            if arg.name.text != "timeout":
                problems.append(
                    error(
                        "E140",
                        f"`wait` has no argument `{arg.name.text}`",
                        arg.name.span,
                        help=did_you_mean(arg.name.text, ["timeout"])
                        or "it takes `timeout`, in seconds",
                    )
                )
            elif (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 < value <= MAX_WAIT
            ):
                problems.append(
                    error(
                        "E140",
                        f"a wait's `timeout` must be a number of seconds greater than 0 and "
                        f"at most {MAX_WAIT:,}",
                        arg.value.span,
                    )
                )
            else:
                timeout = float(value)
        for policy in statement.policies:
            if policy.name.text in ("timeout", "retries", "backoff"):
                problems.append(
                    error(
                        "E140",
                        f"a wait has no `{policy.name.text}` policy: it runs no tool",
                        policy.name.span,
                        help='its timeout is `wait("NAME", timeout = SECONDS)`; '
                        "`with on_error = NODE` is where it goes then",
                    )
                )
        self.problems += problems
        name = given[0].value if given and isinstance(given[0].value, str) else ""
        return WaitSpec(name, timeout)

    def _policy(self, policies: tuple[ast.Policy, ...]) -> Policy:
        good: dict[str, ast.Value] = {}
        seen: set[str] = set()
        on_error: ast.Name | None = None
        for policy in policies:
            name = policy.name.text
            given = policy.value
            rule = POLICY_RULES.get(name)
            if name == "on_error" and name not in seen:
                seen.add(name)
                on_error = self._error_route(policy)
            elif name in seen:
                self.problems.append(
                    error(
                        "E114",
                        f"policy `{name}` is given twice",
                        policy.name.span,
                        help=f"keep one `{name} = ...`",
                    )
                )
            elif rule is None:
                self.problems.append(
                    error(
                        "E113",
                        f"unknown policy `{name}`",
                        policy.name.span,
                        help=did_you_mean(name, POLICIES)
                        or f"the policies are {', '.join(f'`{p}`' for p in POLICIES)}",
                    )
                )
            elif not isinstance(given, ast.JsonValue) or not rule.accepts(given.value):
                seen.add(name)
                self.problems.append(error("E115", rule.message, given.span))
            else:
                seen.add(name)
                good[name] = rule.normal(given.value)
        return Policy(
            _seconds(good.get("timeout")),
            _whole(good.get("retries")),
            _seconds(good.get("backoff")),
            None if on_error is None else on_error.text,
            WHOLE_TEXT if on_error is None else on_error.span,
        )

    def _error_route(self, policy: ast.Policy) -> ast.Name | None:
        """`on_error = NODE`: the node a failed step goes to (mentioned, as a route's target)."""
        given = policy.value
        if isinstance(given, ast.Name):
            if given.text == START:
                self.problems.append(
                    error(
                        "E103",
                        "nothing can lead into `start`",
                        given.span,
                        help="`on_error` names the node a failed step goes to, or `end`",
                    )
                )
                return None
            if given.text != END:
                # Used, as a route's target is; but a route's first node is still the start.
                self.mentioned.add(given.text)
                self.first_mention.setdefault(given.text, given.span)
            return given
        value = given.value
        quoted = isinstance(value, str) and value.isidentifier()
        self.problems.append(
            error(
                "E115",
                "`on_error` must name the node a failed step goes to, or `end`",
                given.span,
                help=f"write the node's name without quotes: `on_error = {value}`"
                if quoted
                else "for example `on_error = fallback`",
            )
        )
        return None

    def route(self, statement: ast.Route) -> None:
        steps = statement.nodes
        if any(isinstance(step, ast.Parallel) for step in steps):
            if not self._parallel_route(statement):
                # The nodes are there; the route is not, but the graph checks count its
                # targets, so that what follows from its absence is not reported too.
                names = [name for step in steps for name in _names(step)]
                for name in names:
                    self._mention(name)
                self.rejected.setdefault(names[0].text, []).extend(n.text for n in names[1:])
                return
            names = [step for step in steps if isinstance(step, ast.Name)]
            pairs = [
                (a, b)
                for a, b in pairwise(steps)
                if isinstance(a, ast.Name) and isinstance(b, ast.Name)
            ]
        else:
            names = [step for step in steps if isinstance(step, ast.Name)]
            pairs = list(pairwise(names))
        for name in names:
            self._mention(name)
        for source, target in pairs:
            assert isinstance(source, ast.Name) and isinstance(target, ast.Name)
            self._add_route(source, Goto(target.text, source.span.to(target.span), target.span))
        if statement.branch is not None:
            source = names[-1]
            branch = statement.branch
            arms = []
            for arm in branch.arms:
                self._mention(arm.target)
                arms.append(Arm(arm.condition, arm.target.text, arm.span, arm.target.span))
            self._mention(branch.otherwise)
            lowered = Branch(tuple(arms), branch.otherwise.text, branch.span, branch.otherwise.span)
            self._add_route(source, lowered, source.span.to(branch.span))

    def _parallel_route(self, statement: ast.Route) -> bool:
        """The forks of a route with parallel branches; False when one cannot stand there.

        A fork stands between a node (the one the branches start after) and a node or `end`
        (where they join); there are two branches or more, each a chain of nodes.
        """
        steps = statement.nodes
        ok = True
        for index, step in enumerate(steps):
            if not isinstance(step, ast.Parallel):
                continue
            before = steps[index - 1] if index else None
            after = steps[index + 1] if index + 1 < len(steps) else None
            if not isinstance(before, ast.Name) or before.text == START:
                self.problems.append(
                    error(
                        "E130",
                        "parallel branches start after a node",
                        step.span,
                        help="write the node they start after first: `NODE -> [b, c] -> JOIN`",
                    )
                )
                ok = False
            elif not isinstance(after, ast.Name) or after.text == START:
                self.problems.append(
                    error(
                        "E130",
                        "parallel branches join at a node: name it after `]`",
                        step.span,
                        help="for example `-> [b, c] -> JOIN`, or `-> end` to end the run "
                        "when both are done"
                        if after is None or isinstance(after, ast.Name)
                        else "join them at a node before the next branches: "
                        "`[b, c] -> JOIN -> [d, e]`",
                    )
                )
                ok = False
            elif len(step.branches) < 2:
                only = " -> ".join(name.text for name in step.branches[0])
                self.problems.append(
                    error(
                        "E131",
                        "parallel branches need two branches or more",
                        step.span,
                        help=f"to run them one after the other, write "
                        f"`{before.text} -> {only} -> {after.text}`",
                    )
                )
                ok = False
            else:
                ok = self._fork(before, step, after) and ok
        if statement.branch is not None and isinstance(steps[-1], ast.Parallel):
            ok = False  # E130 above: the branch would be on the join
        return ok

    def _fork(self, fork: ast.Name, parallel: ast.Parallel, join: ast.Name) -> bool:
        places: dict[str, BranchPlace] = {}
        for index, branch in enumerate(parallel.branches):
            for position, name in enumerate(branch):
                if name.text in (START, END):
                    self.problems.append(
                        error(
                            "E132",
                            f"`{name.text}` cannot be in a parallel branch",
                            name.span,
                            help="a branch is a chain of nodes; name where they join after `]`",
                        )
                    )
                    return False
                place = self.branch_of.get(name.text) or places.get(name.text)
                if place is not None:
                    self.problems.append(
                        error(
                            "E132",
                            f"node `{name.text}` is in a parallel branch already "
                            f"(after `{place.fork}`)",
                            name.span,
                            help="a node runs in one branch: declare another node for the "
                            f"same tool, `node {name.text}_2 = TOOL`",
                        )
                    )
                    return False
                last = position == len(branch) - 1
                following = join.text if last else branch[position + 1].text
                places[name.text] = BranchPlace(fork.text, index, following, last)
        self._mention(fork)
        for branch in parallel.branches:
            for name in branch:
                self._mention(name)
        self._mention(join)
        heads = tuple(tuple(name.text for name in branch) for branch in parallel.branches)
        route = Parallel(heads, join.text, fork.span.to(join.span), join.span)
        self._add_route(fork, route)
        if self.routes.get(fork.text) is not route:
            return False  # refused (`end -> [...]`, a second rule for the node): said so
        self.branch_of.update(places)
        return True

    def _mention(self, name: ast.Name) -> None:
        if name.text not in (START, END):
            self.first_routed = self.first_routed or name.text
            self.mentioned.add(name.text)
            self.first_mention.setdefault(name.text, name.span)

    def _add_route(self, source: ast.Name, route: Route, span: Span | None = None) -> None:
        span = span or route.span
        for target, target_span in _targets(route):
            if target == START:
                self.problems.append(
                    error(
                        "E103",
                        "nothing can lead into `start`",
                        target_span,
                        help="`start -> NODE` names where a run begins",
                    )
                )
        if source.text == END:
            self.problems.append(
                error("E104", "nothing can leave `end`", span, help="a run stops at `end`")
            )
            return
        if source.text == START:
            self._start(route, span)
            return
        if source.text in self.routes:
            first = self.routes[source.text].span
            self.problems.append(
                error(
                    "E102",
                    f"node `{source.text}` already has a routing rule (on line {first.line})",
                    span,
                    help="a node has one plain edge or one branch; merge them into one branch",
                )
            )
            targets = (target for target, _ in _targets(route))
            self.rejected.setdefault(source.text, []).extend(targets)
            return
        self.routes[source.text] = route

    def _start(self, route: Route, span: Span) -> None:
        if self.start is not None:
            self.problems.append(
                error(
                    "E102",
                    f"`start` already leads to `{self.start}` (on line {self.start_span.line})",
                    span,
                )
            )
        elif not isinstance(route, Goto) or route.target in (START, END):
            self.problems.append(
                error(
                    "E105",
                    "`start` must lead to one node with a plain edge: `start -> NODE`",
                    span,
                )
            )
        else:
            self.start, self.start_span = route.target, span

    def program(self, text_hash: str | None) -> Program:
        settings = self.settings
        order = list(self.first_mention)
        nodes: dict[str, Node] = {}
        for name in order:
            decl = self.declared.get(name)
            if decl is None:
                span = self.first_mention[name]
                nodes[name] = Node(name, name, {}, span, span)
                if name == WAIT:  # it would run the tool `wait`, which is the built-in
                    self.problems.append(
                        error(
                            "E140",
                            "`wait` is built in: a node named `wait` needs a declaration",
                            span,
                            help=f'declare what it waits for: `node {name} = wait("approval")`',
                        )
                    )
                continue
            wait = self.waits.get(name)
            subflow = self.subflows.get(name)
            # A wait's `timeout` is the wait's own, a sub-flow's `graph_id` its own: neither
            # is an argument of a tool.
            given = () if wait is not None or subflow is not None else decl.args or ()
            args = {a.name.text: a.value.value for a in given}
            spans = {a.name.text: a.span for a in given}
            tool = SUBFLOW if subflow is not None else decl.tool.text
            nodes[name] = Node(
                name, tool, args, decl.span, decl.tool.span, spans, True,
                self.policies.get(name), self.maps.get(name), wait, subflow,
                bool(decl.positional),
            )  # fmt: skip
        # The default start is the first node a route names; failing that, the first declared.
        start = self.start or self.first_routed or (order[0] if order else START)
        if not nodes:
            self.problems.append(
                error(
                    "E110",
                    "the flow has no nodes",
                    WHOLE_TEXT,
                    help="add a route such as `analyze -> end`",
                )
            )
        return Program(
            name=self.name,
            start=start,
            nodes=nodes,
            routes=self.routes,
            max_steps=_whole(settings.get("max_steps")) or DEFAULT_MAX_STEPS,
            timeout=_seconds(settings.get("timeout")),
            retries=_whole(settings.get("retries")) or DEFAULT_RETRIES,
            backoff=_or(_seconds(settings.get("backoff")), DEFAULT_BACKOFF),
            start_span=self.start_span
            if self.start
            else nodes[start].span
            if nodes
            else WHOLE_TEXT,
            source_hash=text_hash,
            mentioned=frozenset(self.mentioned),
            state=self.state,
            rejected={name: tuple(targets) for name, targets in self.rejected.items()},
            max_steps_span=self.settings_seen.get("max_steps", WHOLE_TEXT),
            branch_of=self.branch_of,
            max_parallel=_whole(settings.get("max_parallel")),
        )


def _seconds(value: ast.Value) -> float | None:
    """A checked number of seconds as a float; None when it was not given."""
    return float(value) if isinstance(value, (int, float)) else None


def _whole(value: ast.Value) -> int | None:
    """A checked whole number; None when it was not given."""
    return value if isinstance(value, int) else None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _names(step: ast.Name | ast.Parallel) -> list[ast.Name]:
    """The node names of a step of a chain: itself, or those of its branches."""
    if isinstance(step, ast.Name):
        return [step]
    return [name for branch in step.branches for name in branch]


def _targets(route: Route) -> list[tuple[str, Span]]:
    if isinstance(route, Goto):
        return [(route.target, route.target_span)]
    if isinstance(route, Parallel):
        return [(route.join, route.join_span)]
    pairs = [(arm.target, arm.target_span) for arm in route.arms]
    return [*pairs, (route.otherwise, route.otherwise_span)]


def lower(flow: ast.Flow, text: str | None = None) -> tuple[Program, list[Diagnostic]]:
    """Lower an AST to a Program; structural problems come back as diagnostics."""
    state = _Lowering()
    for index, statement in enumerate(flow.statements):
        if isinstance(statement, ast.Header):
            state.header(statement, index)
        elif isinstance(statement, ast.Setting):
            state.setting(statement)
        elif isinstance(statement, ast.NodeDecl):
            state.node_decl(statement)
        elif isinstance(statement, ast.StateDecl):
            state.state_decl(statement)
        else:
            state.route(statement)
    program = state.program(source_hash(text) if text is not None else None)
    return program, state.problems


def _is_graph_id(text: str) -> bool:
    """True when `text` spells a UUID (with or without dashes, any case)."""
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
