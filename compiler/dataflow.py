"""Program + tool contracts -> what the state holds at each node, and the reads it cannot serve.

A forward analysis over the graph, iterated to a fixed point with a worklist: at the entry
and exit of each node, which keys every path from `start` has written (certain), which
some path has (maybe), and which some path left of unknown type (wild).  Declared keys
are certain from the start with their declared types.  A tool whose writes are not
declared (or no tool table) may write anything: after it every key counts as written, of
type `any`, so reads after it are not reported (the checks stay gradual).  A key's known
type is the join of what the contracts that write it say.  Only keys that something reads
are tracked, as bits of integers, so a node costs a few integer operations.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from flowc.compiler.graph import show_path
from flowc.compiler.program import START, Branch, Node, Parallel, Program
from flowc.compiler.subflows import child_reads, child_writes
from flowc.compiler.suggestions import did_you_mean
from flowc.compiler.tools import KeyContract, ToolSpec
from flowc.compiler.types import (
    ANY,
    FlowType,
    dict_of,
    is_assignable,
    join,
    list_of,
    problems_with,
)
from flowc.dsl import ast
from flowc.dsl.diagnostics import Diagnostic, Span, error, warning

#: The key a failed step's error route writes (`with on_error = NODE`), and its value's
#: type and shape: `{"code": ..., "message": ..., "node": ..., "attempts": N}`.
ERROR_KEY = "error"
ERROR_TYPE = dict_of(ANY)
ERROR_SAMPLE = {"code": "tool_error", "message": "", "node": "", "attempts": 1}

#: Python's spellings of the constants, read as keys of the state when written in a flow.
PYTHON_CONSTANTS = {"True": "true", "False": "false", "None": "null"}


@dataclass(frozen=True, slots=True)
class Facts:
    """What the state holds at one point, each tracked key a bit of `Analysis.keys`.

    `certain`: written on every path here; `maybe`: on some path; `wild`: on some path
    last written by a tool without a contract (or given as untyped input), so of type `any`.
    A key that is not wild has the type its contracts write (`Analysis.types`).
    """

    certain: int
    maybe: int
    wild: int = 0


@dataclass(frozen=True, slots=True)
class Read:
    """A read of a state key: by a branch condition, or by a node's tool (`required` reads)."""

    key: str
    span: Span
    node: str
    by_tool: bool = False
    #: The type the tool's contract reads it as (`any` for a condition).
    type: FlowType = ANY


class Analysis:
    """The facts at the entry and exit of every reachable node of a program."""

    def __init__(self, program: Program, tools: Mapping[str, ToolSpec] | None) -> None:
        self.program = program
        self.tools = tools
        self.reads = list(_reads(program, tools))
        #: The keys a run is given (not tracked when declared).
        self.inputs: set[str] = set()
        tracked = {read.key for read in self.reads} - set(program.state)
        self.keys: dict[str, int] = {key: 1 << i for i, key in enumerate(sorted(tracked))}
        self.everything = (1 << len(self.keys)) - 1
        #: After a tool without a contract: every key may be there, of any type.
        self._anything = Facts(self.everything, self.everything, self.everything)
        #: Each node's effect: the bits it certainly writes and maybe writes (None: unknown).
        self.effects = {name: self._effect(node) for name, node in program.nodes.items()}
        #: Each tracked key's type where a contract wrote it: the join of all those writes.
        self.types: dict[str, FlowType] = {}
        for node in program.nodes.values():
            for written in self.contract(node) or ():
                if written.name in self.keys:
                    known = self.types.get(written.name)
                    self.types[written.name] = (
                        written.type if known is None else join(known, written.type)
                    )
        if ERROR_KEY in self.keys and any(map(program.error_route, program.nodes)):
            known = self.types.get(ERROR_KEY)
            self.types[ERROR_KEY] = ERROR_TYPE if known is None else join(known, ERROR_TYPE)
        self.entry: dict[str, Facts] = {}
        self.exits: dict[str, Facts] = {}
        self._walks: dict[str, dict[str, str | None]] = {}
        self._solve()
        if not program.state:
            # A flow without declarations says nothing about its input: a key a tool
            # requires where it may be missing is taken as given.
            self.inputs = {read.key for read in self.reads if read.by_tool and self._missing(read)}
            if self.inputs:
                self._solve()

    def _missing(self, read: Read) -> bool:
        facts = self.entry.get(read.node)
        return facts is not None and not facts.certain & self.keys.get(read.key, 0)

    def contract(self, node: Node) -> tuple[KeyContract, ...] | None:
        """The node's declared writes; None when unknown.

        A map writes the list of its calls' results under its own name; a wait writes what
        it is resumed with (unknown); a sub-flow what its child declares (`compiler.subflows`).
        """
        if node.map is not None:
            return (KeyContract(node.name, list_of(ANY)),)
        if node.wait is not None:
            return None
        if node.flow is not None:
            return None if node.flow.child is None else child_writes(node.flow.child, self.program)
        spec = self.tools.get(node.tool) if self.tools is not None else None
        return None if spec is None else spec.writes

    def bits(self, names: Iterator[str]) -> int:
        """The bits of the tracked keys among `names`."""
        mask = 0
        for name in names:
            mask |= self.keys.get(name, 0)
        return mask

    def _effect(self, node: Node) -> tuple[int, int] | None:
        writes = self.contract(node)
        if writes is None:
            return None
        return self.bits(w.name for w in writes if w.required), self.bits(w.name for w in writes)

    def after(self, name: str, facts: Facts) -> Facts:
        """The facts at the exit of node `name`, given those at its entry."""
        effect = self.effects[name]
        if effect is None:
            return self._anything
        certain, maybe = effect
        return Facts(facts.certain | certain, facts.maybe | maybe, facts.wild & ~certain)

    def _solve(self) -> None:
        start = self.program.start
        if start not in self.program.nodes:
            return
        given = self.bits(iter(self.inputs))
        # A flow's declared keys are not tracked; the inputs taken from tool contracts are
        # (of unknown type).
        self.entry = {start: Facts(given, given, given)}
        self.exits = {}
        queue = deque([start])
        queued = {start}
        nodes = self.program.nodes
        route_targets = self.program.route_targets
        branch_of = self.program.branch_of
        entry = self.entry
        error_route = self.program.error_route
        error_bit = self.keys.get(ERROR_KEY, 0)
        while queue:
            name = queue.popleft()
            queued.discard(name)
            facts = entry[name]
            out = self.exits[name] = self.after(name, facts)
            place = branch_of.get(name)
            if place is not None and place.last:
                # The join sees every branch's writes, once all of them have been walked.
                joined = self._joined(place.fork)
                edges = [] if joined is None else [(place.next, joined)]
            else:
                edges = [(target, out) for target in route_targets(name)]
            on_error = error_route(name)
            if on_error is not None:
                # A failed step wrote nothing of its own, only `error`.
                failed = Facts(facts.certain | error_bit, facts.maybe | error_bit,
                               facts.wild & ~error_bit)  # fmt: skip
                edges.append((on_error, failed))
            for target, out in edges:
                if target not in nodes:  # `end`, or a missing node (E111 says so)
                    continue
                known = entry.get(target)
                new = (
                    out
                    if known is None
                    else Facts(
                        known.certain & out.certain, known.maybe | out.maybe, known.wild | out.wild
                    )
                )
                if new != known:
                    self.entry[target] = new
                    if target not in queued:
                        queued.add(target)
                        queue.append(target)

    def _joined(self, fork: str) -> Facts | None:
        """The facts where the parallel branches after `fork` join; None until all are known.

        Every branch runs, so a key any of them writes is there after the join.
        """
        route = self.program.routes[fork]
        assert isinstance(route, Parallel)
        lasts = [self.exits.get(branch[-1]) for branch in route.branches]
        if any(facts is None for facts in lasts):
            return None
        certain = maybe = wild = 0
        for facts in lasts:
            assert facts is not None
            certain, maybe, wild = certain | facts.certain, maybe | facts.maybe, wild | facts.wild
        return Facts(certain, maybe, wild)

    def exit(self, name: str) -> Facts | None:
        """The facts after node `name` ran; None when no path reaches it."""
        return self.exits.get(name)

    def path_types(self, facts: Facts) -> Callable[[ast.PathExpr], FlowType]:
        """The types of paths into the state at a point with `facts`."""

        def path_type(path: ast.PathExpr) -> FlowType:
            first = path.parts[0]
            if not isinstance(first, str):
                return ANY
            declared = self.program.state.get(first)
            if declared is not None:
                current = declared.type
            else:
                bit = self.keys.get(first, 0)
                if not facts.maybe & bit or facts.wild & bit:
                    return ANY
                current = self.types.get(first, ANY)
            for part in path.parts[1:]:
                expected = "list" if isinstance(part, int) else "dict"
                if current.kind != expected or current.nullable:
                    return ANY
                current = current.items
            return current

        return path_type

    def missing_path(self, read: Read) -> list[str]:
        """A shortest path from `start` to the reading node on which nothing writes the key.

        The path ends at the node, before its step: a condition it runs after reads the
        key only where the node does not certainly write it.  One walk per key serves every
        read of it.
        """
        parents = self._walks.get(read.key)
        if parents is None:
            parents = self._walks[read.key] = self._walk(read.key)
        if read.node not in parents:
            return []
        return [START, *self._path(parents, read.node)]

    def _walk(self, key: str) -> dict[str, str | None]:
        """Breadth first from the start through the nodes a run can enter without `key`.

        A node that certainly writes `key` passes on only through its error route (a
        failed step writes nothing of its own), which in turn writes `error` itself.
        """

        def blocked(name: str) -> bool:
            effect = self.effects[name]
            return effect is None or bool(effect[0] & self.keys[key])

        program = self.program
        parents: dict[str, str | None] = {program.start: None}
        queue = deque([program.start])
        while queue:
            name = queue.popleft()
            targets = [] if blocked(name) else list(program.route_targets(name))
            on_error = program.error_route(name)
            if on_error is not None and key != ERROR_KEY:
                targets.append(on_error)
            for target in targets:
                if target in parents or target not in program.nodes:
                    continue
                parents[target] = name
                queue.append(target)
        return parents

    @staticmethod
    def _path(parents: dict[str, str | None], last: str) -> list[str]:
        path: list[str] = []
        current: str | None = last
        while current is not None:
            path.append(current)
            current = parents[current]
        return path[::-1]


def _reads(program: Program, tools: Mapping[str, ToolSpec] | None) -> Iterator[Read]:
    for name, node in program.nodes.items():
        spec = tools.get(node.tool) if tools is not None and node.wait is None else None
        if node.flow is not None:
            spec = None
            if node.flow.child is not None:
                for contract in child_reads(node.flow.child):
                    yield Read(contract.name, node.tool_span, name, True, contract.type)
        mapped = node.map
        if mapped is not None:  # a map reads its list; its tool gets the item besides
            yield Read(mapped.over, mapped.over_span, name, True, list_of(ANY))
        if spec is not None and spec.reads is not None:
            for contract in spec.reads:
                if contract.required and (mapped is None or contract.name != mapped.item):
                    yield Read(contract.name, node.tool_span, name, True, contract.type)
        route = program.routes.get(name)
        if isinstance(route, Branch):
            yield from _branch_reads(route, name)


def _branch_reads(branch: Branch, node: str) -> Iterator[Read]:
    """The unguarded reads of a branch's conditions, the first of each key."""
    seen: set[str] = set()
    guarded: frozenset[str] = frozenset()
    for arm in branch.arms:
        for key, span in _condition_reads(arm.condition, guarded):
            if key not in seen:
                seen.add(key)
                yield Read(key, span, node)
        # The next arm is tried only when this one was false.
        guarded |= _known_if(arm.condition, False)


def _condition_reads(expr: ast.Expr, guarded: frozenset[str]) -> Iterator[tuple[str, Span]]:
    """`(key, span)` of every path read in `expr` that no `exists(...)` guards."""
    pending: list[tuple[ast.Expr, frozenset[str]]] = [(expr, guarded)]
    while pending:
        item, keys = pending.pop()
        if isinstance(item, ast.PathExpr):
            first = item.parts[0]
            if isinstance(first, str) and first not in keys:
                yield first, item.span
        elif isinstance(item, ast.Binary):
            right_keys = keys
            if item.op in ("and", "or"):
                right_keys = keys | _known_if(item.left, item.op == "and")
            pending += [(item.right, right_keys), (item.left, keys)]
        elif isinstance(item, ast.Unary):
            pending.append((item.operand, keys))
        elif isinstance(item, ast.ListExpr):
            pending += [(value, keys) for value in reversed(item.items)]
        elif isinstance(item, ast.Call):
            args = item.args[1:] if item.function in ("exists", "default") else item.args
            pending += [(value, keys) for value in reversed(args)]


def _known_if(expr: ast.Expr, outcome: bool) -> frozenset[str]:
    """Keys that surely exist when `expr` has evaluated to `outcome`."""
    if isinstance(expr, ast.Call) and expr.function == "exists" and outcome and expr.args:
        path = expr.args[0]
        if isinstance(path, ast.PathExpr) and isinstance(path.parts[0], str):
            return frozenset([path.parts[0]])
        return frozenset()
    if isinstance(expr, ast.Unary) and expr.op == "not":
        return _known_if(expr.operand, not outcome)
    if isinstance(expr, ast.Binary) and expr.op in ("and", "or"):
        both = (expr.op == "and") == outcome  # `a and b` true, `a or b` false: both hold
        if both:
            return _known_if(expr.left, outcome) | _known_if(expr.right, outcome)
    return frozenset()


def check_dataflow(analysis: Analysis) -> list[Diagnostic]:
    """Reads no path serves (E601, W604), reads some path does not (W602), bad writes (E603).

    Also keys that parallel branches write with nothing to merge them (E135).
    """
    problems = _write_types(analysis) + _merge_conflicts(analysis)
    program = analysis.program
    known = sorted({*program.state, *analysis.inputs, *_written(analysis)})
    for read in analysis.reads:
        if read.key in program.state or read.key not in analysis.keys:
            continue
        facts = analysis.entry.get(read.node)
        if facts is None:
            continue  # an unreachable node: W501 says so
        if not read.by_tool:
            facts = analysis.exits[read.node]
        bit = analysis.keys[read.key]
        if not facts.maybe & bit:
            problems.append(_unwritten(read, program, known))
        elif not facts.certain & bit:
            problems.append(_sometimes(read, program, analysis.missing_path(read)))
    return problems


def _written(analysis: Analysis) -> set[str]:
    names: set[str] = set()
    for node in analysis.program.nodes.values():
        names.update(w.name for w in analysis.contract(node) or ())
    return names


def _unwritten(read: Read, program: Program, known: list[str]) -> Diagnostic:
    """E601; in a flow without declarations, W604 unless the key looks like a mistake.

    Such a flow says nothing about its input, so a key no tool writes may come from it;
    a Python constant (`True`) or a near miss of a known key (`syntax_okk`) is an error.
    """
    key = read.key
    if key in PYTHON_CONSTANTS:
        hint: str | None = f"did you mean `{PYTHON_CONSTANTS[key]}`?"
    else:
        # A key some later node writes is known, but is no typo of itself.
        hint = did_you_mean(key, known)
        if hint == f"did you mean `{key}`?":
            hint = None
    declare = f"declare it as an input: `state {key}: {'TYPE' if read.type.is_any else read.type}`"
    if hint is None and not program.state:
        return warning(
            "W604",
            f"no path to this branch writes `{key}`: it can only come from the run's input",
            read.span,
            help=declare,
        )
    if hint is None:
        hint = declare
    node = program.nodes[read.node]
    if node.map is not None and node.map.over == key and read.span == node.map.over_span:
        message = f"node `{read.node}` maps over `{key}`, but no path to it writes `{key}`"
    elif read.by_tool and node.flow is not None:
        message = (
            f"sub-flow `{node.flow.name}` needs `{key}` as input, but no path to node "
            f"`{read.node}` writes it"
        )
    elif read.by_tool:
        message = f"tool `{node.tool}` reads `{key}`, but no path to node `{read.node}` writes it"
    else:
        message = f"no path to this branch writes `{key}`, and no `state` declares it"
    return error("E601", message, read.span, hint)


def _sometimes(read: Read, program: Program, path: list[str]) -> Diagnostic:
    by = f" by {_doer(program.nodes[read.node])}" if read.by_tool else ""
    message = f"`{read.key}` is read on line {read.span.line}{by}, but "
    message += (
        f"the path `{show_path(path)}` never writes it" if path else "not every path writes it"
    )
    hint = (
        f"declare it with a default: `state {read.key}: TYPE = VALUE`"
        if read.by_tool
        else f"guard the read with `exists({read.key})` or `default({read.key}, VALUE)`"
    )
    return warning("W602", message, read.span, hint)


def _doer(node: Node) -> str:
    """What a node runs, in a message: "tool `x`" or "sub-flow `x`"."""
    return f"sub-flow `{node.flow.name}`" if node.flow is not None else f"tool `{node.tool}`"


def _write_types(analysis: Analysis) -> list[Diagnostic]:
    """E603 where a tool, or an error route, writes a declared key with a type it does not allow."""
    problems: list[Diagnostic] = []
    state = analysis.program.state
    declared_error = state.get(ERROR_KEY)
    if declared_error is not None and problems_with(declared_error.type, ERROR_SAMPLE):
        for node in analysis.program.nodes.values():
            if node.policy is not None and node.policy.on_error is not None:
                problems.append(
                    error(
                        "E603",
                        f"the error route of node `{node.name}` writes `{ERROR_KEY}` as a dict "
                        f"(code, message, node, attempts), but the state declares it "
                        f"{declared_error.type} (line {declared_error.span.line})",
                        node.policy.on_error_span,
                        help=f"declare `state {ERROR_KEY}: dict? = null`",
                    )
                )
    for node in analysis.program.nodes.values():
        if node.flow is not None:
            continue  # both flows declare what a sub-flow writes: E156 compares them
        for written in analysis.contract(node) or ():
            declared = state.get(written.name)
            if declared is None or is_assignable(written.type, declared.type):
                continue
            if node.map is not None:
                problems.append(
                    error(
                        "E603",
                        f"the map `{node.name}` collects its results in `{node.name}`, a list, "
                        f"but the state declares it {declared.type} (line {declared.span.line})",
                        node.map.span,
                        help=f"declare `state {node.name}: list[dict] = []`, or rename the node",
                    )
                )
                continue
            problems.append(
                error(
                    "E603",
                    f"{_doer(node)} writes `{written.name}` as {written.type}, but the "
                    f"state declares it {declared.type} (line {declared.span.line})",
                    node.tool_span,
                    help=f"declare `state {written.name}: {written.type}`, or change the tool",
                )
            )
    return problems


#: The reducer a message suggests for a key of each kind.
_SUGGESTED_REDUCER = {"list": "extend", "dict": "merge", "int": "sum", "float": "sum"}


def _merge_conflicts(analysis: Analysis) -> list[Diagnostic]:
    """E135 where the contracts show two parallel branches write a key without a reducer."""
    problems: list[Diagnostic] = []
    program = analysis.program
    for fork, route in program.routes.items():
        if not isinstance(route, Parallel):
            continue
        writers: dict[str, list[str]] = {}
        for branch in route.branches:
            written: dict[str, str] = {}
            for name in branch:
                node = program.nodes.get(name)
                for contract in (analysis.contract(node) or ()) if node else ():
                    written.setdefault(contract.name, name)
            for key, name in written.items():
                writers.setdefault(key, []).append(name)
        for key, names in writers.items():
            declared = program.state.get(key)
            if len(names) < 2 or (declared is not None and declared.reducer is not None):
                continue
            if declared is None:
                fix = f"declare it with a reducer: `state {key}: TYPE by REDUCER`"
            else:
                reducer = _SUGGESTED_REDUCER.get(declared.type.kind, "replace")
                fix = f"give its declaration (line {declared.span.line}) a reducer: `by {reducer}`"
            problems.append(
                error(
                    "E135",
                    f"`{key}` is written by parallel branches after `{fork}` "
                    f"(by `{names[0]}` and `{names[1]}`), and nothing says how to merge them",
                    route.span,
                    help=fix,
                )
            )
    return problems
